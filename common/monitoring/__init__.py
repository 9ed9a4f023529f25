"""Drift and compliance: samples taken while serving, the scheduled scans and their reports."""
