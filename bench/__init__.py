"""Benchmarks that print figures (never timed tests): run them as `python -m bench.<name>`."""
