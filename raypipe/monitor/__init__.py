"""Monitoring: the training reference profile (drift statistics and monitor actors follow)."""
