"""What exists: models, their versions and artifacts, and the record of every deployment."""
