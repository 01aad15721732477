"""Sandboxes: rebuild a model's environment and run it there (``envkit validate``)."""
