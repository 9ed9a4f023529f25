"""Moving versions into and out of production: stages, gates, verification, canary, rollback."""
