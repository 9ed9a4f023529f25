"""What runs beside the functions and never ships in them.

ipoctl, the local gateway, local set-up and training: no function archive contains this package.
"""
