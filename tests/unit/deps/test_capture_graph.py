"""Transitive capture follows the dependency graph that is installed, and these tests own it.

The distributions are the ektest wheels (``tests/local_wheels.py``), installed by uv from a
local ``--find-links`` directory. The cases replay what happened on PyPI when python-dateutil
4.0 dropped six: with the tests' own graph, a new release elsewhere cannot change their result,
and the new-release cases show that the capture records what is installed, not what was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from capture_helpers import model_importing

import envkit.pyfunc

pytestmark = pytest.mark.capture  # these test the capture subprocess itself

PYFUNC = {"envkit", "cloudpickle"}


def _captured(model_dir: Path) -> set[str]:
    """requirements.txt's ektest lines as written (pins included), the others by name."""
    from envkit.deps.requirements import requirement_name

    lines = (model_dir / "requirements.txt").read_text().splitlines()
    return {line if line.startswith("ektest") else requirement_name(line) for line in lines}


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An empty site directory on ``sys.path`` (the capture subprocess inherits it)."""
    directory = tmp_path / "site-packages"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    return directory


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        pytest.param(
            ("ektest-top==1.0.0", "ektest-leaf==1.0.0"),
            {"ektest-top==1.0.0", "ektest-leaf==1.0.0"},
            id="top-imports-its-declared-leaf",
        ),
        pytest.param(
            ("ektest-top==1.0.0", "ektest-leaf==2.0.0"),
            {"ektest-top==1.0.0", "ektest-leaf==2.0.0"},
            id="new-release-of-the-transitive-dependency",
        ),
        pytest.param(
            ("ektest-top==2.0.0", "ektest-leaf==1.0.0"),
            {"ektest-top==2.0.0"},
            id="new-release-of-top-drops-the-leaf",
        ),
    ],
)
def test_transitive_capture_follows_the_installed_graph(
    local_index, site, tmp_path, installed, expected
):
    local_index.install(site, *installed)
    model = model_importing("import ektop")
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model)
    assert _captured(tmp_path / "m") == PYFUNC | expected


def test_import_names_differ_from_distribution_names_and_need_no_top_level(
    local_index, site, tmp_path
):
    # ektest-leaf has no top_level.txt (as flit and hatchling build): its RECORD decides.
    local_index.install(site, "ektest-leaf==1.0.0")
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model_importing("import ekleaf"))
    assert _captured(tmp_path / "m") == PYFUNC | {"ektest-leaf==1.0.0"}


def test_a_namespace_package_records_only_the_half_that_was_imported(local_index, site, tmp_path):
    local_index.install(site, "ektest-ns-alpha==1.0.0", "ektest-ns-beta==1.0.0")
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model_importing("import ekns.beta"))
    assert _captured(tmp_path / "m") == PYFUNC | {"ektest-ns-beta==1.0.0"}
