"""A/B experiments: design, sticky assignment, exposures, delayed outcomes and their statistics."""
