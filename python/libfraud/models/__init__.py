"""Fraud models: gradient-boosted trees (``gbdt``)."""
