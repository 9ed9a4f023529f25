"""Who may call: tokens and keys, service identity, rate limits, envelope encryption."""
