"""Older MLflow models: unpinned build dependencies held to the model's time (uv
--exclude-newer), and the hint for ``pkg_resources``, which setuptools 81 dropped.

The models here are envkit's with the two things an MLflow 2.12 model has edited in: unpinned
``build_dependencies`` (pip, setuptools, wheel) and an older ``utc_time_created``; the model's
code imports ``pkg_resources`` (as libraries of that time did).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(900)


def envkit_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args], capture_output=True, text=True,
        env={**os.environ, "ENVKIT_HOME": str(home)}, timeout=900,
    )  # fmt: skip


def old_model(path: Path, created: str) -> Path:
    import envkit.pyfunc

    class UsesPkgResources(envkit.pyfunc.PythonModel):  # pickled by value (a local class)
        def predict(self, context, model_input, params=None):
            import pkg_resources

            return [pkg_resources.__name__ for _ in range(len(model_input))]

    envkit.pyfunc.save_model(
        path, python_model=UsesPkgResources(), input_example=["a"], pip_requirements=["pandas"]
    )
    env_file = path / "python_env.yaml"
    env = yaml.safe_load(env_file.read_text())
    env["build_dependencies"] = ["pip", "setuptools", "wheel"]  # as MLflow 2.x writes them
    env_file.write_text(yaml.safe_dump(env))
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    mlmodel["utc_time_created"] = created
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return path


def test_unpinned_build_dependencies_are_those_of_the_models_time(tmp_path):
    model = old_model(tmp_path / "m", "2024-04-16 09:12:31.123456")
    result = envkit_cli("validate", str(model), "--format", "json", home=tmp_path / "home")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["spec"]["exclude_newer"] == "2024-04-16T09:12:31Z"
    assert any("uv --exclude-newer" in n and "2024-04-16" in n for n in report["spec_notes"])
    [site] = Path(report["cache"]["path"]).glob("lib/python*/site-packages")
    [setuptools] = site.glob("setuptools-*.dist-info")
    major = int(setuptools.name.split("-")[1].split(".")[0])
    assert major < 70, setuptools.name  # released before April 2024


def test_pkg_resources_missing_gets_the_setuptools_hint_and_the_override_fixes_it(tmp_path):
    # Made "now": the newest setuptools comes in, without pkg_resources (setuptools >= 81).
    model = old_model(tmp_path / "m", "2099-01-01 00:00:00")
    home = tmp_path / "home"
    result = envkit_cli("validate", str(model), "--format", "json", home=home)
    report = json.loads(result.stdout)
    [site] = Path(report["cache"]["path"]).glob("lib/python*/site-packages")
    [setuptools] = site.glob("setuptools-*.dist-info")
    if int(setuptools.name.split("-")[1].split(".")[0]) < 81:
        pytest.skip(f"the index has no setuptools >= 81 ({setuptools.name})")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--override 'setuptools<81'" in report["headline"]
    fixed = envkit_cli("validate", str(model), "--override", "setuptools<81", home=home)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
