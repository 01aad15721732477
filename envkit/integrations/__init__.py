"""Integrations: pytest plugin, tox, spark."""
