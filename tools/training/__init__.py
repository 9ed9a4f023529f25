"""Training code: used by scripts/train_models.py, never imported by a serving function."""
