"""The HTTP surface: routes from openapi.yaml, the one dispatch, handlers, views and metrics."""
