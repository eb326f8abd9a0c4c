"""Drift monitoring functions: the scheduled check and the retrain trigger."""
