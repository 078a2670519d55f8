"""Celery wiring: the app, its settings and thin task wrappers around pipeline stages."""
