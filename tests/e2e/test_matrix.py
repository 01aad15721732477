"""``envkit matrix``: a model over Pythons and override sets, concurrently, one row per cell.

A models-from-code model (source, so it loads under any Python) that fails with the second
release of a distribution the test owns (the ektest wheels, from a local --find-links
directory): 2 Pythons x 2 override sets, and a Python that is not on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import RUNTIME_PINS, write_code_model  # (tests/e2e/conftest.py)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
OTHER = "3.12" if HERE != "3.12" else "3.11"
V1, V2 = "ektest-leaf==1.0.0", "ektest-leaf==2.0.0"


@pytest.fixture(scope="module")
def leaf_model(tmp_path_factory, local_index) -> Path:
    root = tmp_path_factory.mktemp("matrix")
    # (saving checks the example here: ektest-leaf 1.0.0 importable for that, then removed)
    site = str(local_index.install(root / "site", V1))
    sys.path.insert(0, site)
    try:
        return _save(root, local_index)
    finally:
        sys.path.remove(site)
        for name in [m for m in sys.modules if m == "ekleaf" or m.startswith("ekleaf.")]:
            del sys.modules[name]


def _save(root: Path, local_index) -> Path:
    return write_code_model(
        root,
        "leaf",
        """
        import ekleaf
        if ekleaf.VERSION != "1.0.0":
            raise RuntimeError(f"needs ektest-leaf 1.0.0, got {ekleaf.VERSION}")
        return [len(model_input)]
        """,
        requirements=[f"--find-links {local_index.directory}", V1, *RUNTIME_PINS],
        input_example=[1, 2, 3],
    )


def test_a_matrix_reports_every_cell_and_the_failing_ones_with_their_reason(leaf_model, cache_root):
    import envkit

    report = envkit.matrix(
        leaf_model,
        pythons=[HERE, OTHER, "3.99"],
        override_sets=[[V1], [V2]],
        jobs=2,
        cache_dir=cache_root,
    )
    cells = {(r.cell.python, r.cell.overrides): r for r in report.results}
    assert len(cells) == 6
    for python in (HERE, OTHER):
        ok, failed = cells[(python, (V1,))], cells[(python, (V2,))]
        assert ok.status == "ok" and ok.interpreter.startswith(python), ok.reason
        assert ok.resolved == {"ektest-leaf": "1.0.0"}
        assert failed.status == "model_failed" and failed.exit_code == 1
        assert "needs ektest-leaf 1.0.0, got 2.0.0" in failed.reason
        assert failed.resolved == {"ektest-leaf": "2.0.0"}
        assert ok.build_seconds > 0 and ok.run_seconds > 0
    for overrides in ((V1,), (V2,)):
        missing = cells[("3.99", overrides)]
        assert missing.status == "skipped" and "no Python 3.99" in missing.reason
    assert report.exit_code == 1  # the worst cell's: a model failed; skipped cells are not
    data = report.to_dict()
    assert [c["status"] for c in data["cells"]].count("ok") == 2 and data["jobs"] == 2


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", "matrix", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ENVKIT_HOME": str(home)},
        timeout=900,
    )


def test_the_cli_table_json_junit_and_strict(leaf_model, cache_root, tmp_path):
    args = [str(leaf_model), "--python", HERE, "--python", "3.99", "--with", V1, "--with", V2]
    proc = _cli(*args, home=cache_root)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["cell", "interpreter", "resolved"]
    failing = next(line for line in lines if V2 in line and "model_failed" in line)
    assert "needs ektest-leaf 1.0.0, got 2.0.0" in failing
    assert lines[-1].startswith("FAILED: 4 cells (1 model_failed, 1 ok, 2 skipped)")

    junit = tmp_path / "matrix.xml"
    proc = _cli(*args, "--format", "junit", "--output", str(junit), home=cache_root)
    assert proc.returncode == 1 and proc.stdout.startswith("FAILED: 4 cells")
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "2")

    proc = _cli(*args, "--format", "json", "--strict", "--jobs", "1", home=cache_root)
    data = json.loads(proc.stdout)
    assert proc.returncode == 3 and data["exit_code"] == 3  # a missing Python fails, strictly
    assert {c["status"] for c in data["cells"]} == {"ok", "model_failed", "env_failed"}


def test_bad_matrix_options_are_exit_2(leaf_model, cache_root):
    for bad in (["--python", "3.13-3.9"], ["--python", "three"], ["--jobs", "0"]):
        proc = _cli(str(leaf_model), *bad, home=cache_root)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1
