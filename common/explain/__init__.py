"""Explanations: attributions of a model's outputs to its inputs against a baseline.

Below serving, above models: the engine takes a loaded runtime, instances, a baseline, a
path count and a seed, and answers attributions; routing and HTTP stay with its callers.
"""
