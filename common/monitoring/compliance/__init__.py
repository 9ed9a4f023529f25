"""The compliance scan: its checks, the state they read, and the scan job."""
