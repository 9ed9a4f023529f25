"""The tamper-evident audit trail, its verification, and retention and erasure of stored data."""
