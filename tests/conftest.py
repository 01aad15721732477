"""Shared fixtures: tiny models trained on a few rows, and a real MLflow in its own virtualenv.

MLflow is a peer, never a dependency: the interop tests run it in a separate virtualenv that
the test session builds once (file-locked, so pytest-xdist workers share one build) under
``ENVKIT_TEST_CACHE`` (default ``~/.cache/envkit-tests``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MLFLOW_VERSION = os.environ.get("ENVKIT_TEST_MLFLOW_VERSION", "3.17.2")
# What the MLflow venv holds besides mlflow: the flavors both sides know, at this
# interpreter's versions so that pickles move between the two.
_MLFLOW_VENV_EXTRAS = ("scikit-learn", "skops", "pandas", "numpy", "cloudpickle")


def test_cache_root() -> Path:
    root = Path(os.environ.get("ENVKIT_TEST_CACHE", Path.home() / ".cache" / "envkit-tests"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _pins(names: tuple[str, ...]) -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in names]


def _build_venv(target: Path, requirements: list[str]) -> None:
    """Create ``target`` with ``requirements`` installed (uv); ``.complete`` marks success.

    Built in place (console scripts record their absolute path), so an interrupted build is
    recognised by the missing marker and rebuilt from scratch.
    """
    shutil.rmtree(target, ignore_errors=True)
    uv = [sys.executable, "-m", "uv"]
    subprocess.run(
        [*uv, "venv", "--quiet", "--python", sys.executable, str(target)],
        check=True,
        capture_output=True,
    )
    proc = subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(target / "bin" / "python"),
            *requirements,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise RuntimeError(f"building the test venv failed:\n{proc.stderr[-3000:]}")
    (target / ".complete").write_text(json.dumps(requirements))


def shared_venv(name: str, requirements: list[str]) -> Path:
    """A virtualenv with ``requirements``, built once per requirements set and shared."""
    from filelock import FileLock

    key = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:12]
    target = test_cache_root() / f"{name}-{key}"
    with FileLock(str(target) + ".lock", timeout=900):
        if not (target / ".complete").exists():
            _build_venv(target, requirements)
    return target / "bin" / "python"


@pytest.fixture(scope="session")
def mlflow_python() -> Path:
    """Python of a separate virtualenv with real MLflow (and the same sklearn/pandas as here)."""
    if sys.version_info < (3, 10):
        pytest.skip(
            f"MLflow {MLFLOW_VERSION} needs Python >= 3.10 (this is {sys.version.split()[0]})"
        )
    return shared_venv("mlflow", [f"mlflow=={MLFLOW_VERSION}", *_pins(_MLFLOW_VENV_EXTRAS)])


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def iris():
    """(X, y) of the iris data set as a DataFrame and a Series."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def iris_pipeline(iris):
    """A StandardScaler + LogisticRegression pipeline fitted on iris."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
