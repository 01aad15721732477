"""The unit tier: fast and self-contained (``pytest tests/unit -n 2`` in well under 90 s).

Saving a model normally starts a capture subprocess (about a second). Unit tests that test
something else save without it (``envkit.deps.capture.capture_disabled``): their models record
the flavor's default requirements, as a model whose capture failed does. Tests of the capture
itself are marked ``capture`` and capture for real.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _capture_only_where_tested(request: pytest.FixtureRequest):
    if request.node.get_closest_marker("capture") is not None:
        yield
        return
    from envkit.deps.capture import capture_disabled

    with capture_disabled("turned off for a unit test that does not test the capture"):
        yield
