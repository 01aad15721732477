"""Scan before load (issue 13) end to end: ``envkit validate`` with uv refuses a dangerous pickle
on the host before anything is built, passes a real iris model (scanned again in its rebuilt
environment, where the scanner is envkit's runtime dependency), and carries ``--trust-model``
to the model's own process."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


class _Pwn:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def envkit_cli(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ENVKIT_HOME": str(home)},
        cwd=cwd,
        timeout=900,
    )


@pytest.fixture
def pwned_model(tmp_path: Path, iris_model: Path) -> tuple[Path, Path]:
    path = tmp_path / "M"
    shutil.copytree(iris_model, path)
    marker = tmp_path / "pwned"
    with open(path / "model.pkl", "wb") as handle:
        pickle.dump(_Pwn(marker), handle)
    return path, marker


def test_validate_with_uv_refuses_the_repro_before_building_anything(pwned_model, cache_root):
    path, marker = pwned_model
    proc = envkit_cli("validate", str(path), home=cache_root, cwd=path.parent)
    assert proc.returncode == 1, proc.stderr
    assert "refusing to load model.pkl" in proc.stderr
    assert "system" in proc.stderr and "--trust-model" in proc.stderr
    assert not marker.exists() and not (path.parent / "pwned").exists()
    assert not (cache_root / "envs").exists() or not any((cache_root / "envs").iterdir())


def test_validate_with_uv_passes_the_iris_model(iris_model, shared_cache):
    proc = envkit_cli("validate", str(iris_model), "--format", "json", home=shared_cache)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and report["backend"] == "uv"


def test_trust_model_reaches_the_models_process(pwned_model, shared_cache):
    """With --trust-model the host does not refuse, and neither does the runner's own scan in
    the rebuilt environment: the pickle is loaded there (it unpickles to os.system's exit
    status, which cannot predict)."""
    path, _ = pwned_model
    proc = envkit_cli("validate", str(path), "--trust-model", "--format", "json", home=shared_cache)
    assert proc.returncode == 1, proc.stderr
    assert "refusing" not in proc.stdout + proc.stderr
    assert "has no attribute 'predict'" in proc.stdout + proc.stderr
