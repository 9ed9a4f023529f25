"""The libraries of the infrastructure checks (scripts/check_infra.py, check_cloudbuild.py).

They read terraform/ and cloudbuild.yaml in the checkout; nothing deployed imports them.
"""
