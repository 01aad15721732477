"""Capture, record and check a model's environment (requirements, env var names)."""
