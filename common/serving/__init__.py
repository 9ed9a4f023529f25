"""The prediction path: routing a request to a version, the caches, loaded models, cache warming."""
