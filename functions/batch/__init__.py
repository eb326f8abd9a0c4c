"""Batch scoring handlers (docs/batch.md): Prepare, ScoreBatch, Summarize over ``steps.py``."""
