"""pytest plugin shipped with envkit (registered through the ``pytest11`` entry point).

It gives test suites of model projects a fixture to gate a model on ``envkit validate``:

    def test_model_deploys(envkit_validate):
        report = envkit_validate("path/to/model")
        assert report.ok, report.headline

The fixture is cheap to register: envkit's sandbox is imported only when it is used.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest


@pytest.fixture
def envkit_validate() -> Callable[..., Any]:
    """``envkit.validate`` (same arguments), returning the ValidationReport."""

    def run(model_uri: str, **options: Any) -> Any:
        from envkit.sandbox.validate import validate

        return validate(model_uri, **options)

    return run
