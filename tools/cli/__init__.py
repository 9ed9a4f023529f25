"""ipoctl, the command-line client of the platform's API."""
