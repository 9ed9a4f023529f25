"""Operation handlers: each takes a Call and returns what the operation answers."""
