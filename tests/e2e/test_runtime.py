"""A model's environment holds its requirements and envkit's runtime, nothing of envkit's tooling.

envkit's runtime (what a model's ``requirements.txt`` pins as ``envkit``) is PyYAML, packaging and
cloudpickle; uv, virtualenv, filelock and rich are the ``cli`` extra, which no sandbox, serving
environment or image gets. So a model that imports a tooling package without recording it fails
validation instead of passing by luck.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import envkit.pyfunc

pytestmark = pytest.mark.slow

TOOLING = {
    "uv", "virtualenv", "distlib", "rich", "pygments", "markdown-it-py", "mdurl", "platformdirs",
    "python-discovery", "filelock",
}  # fmt: skip


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ENVKIT_HOME": str(home)},
        timeout=600,
    )


@pytest.mark.parametrize("module", ["filelock", "rich", "platformdirs"])
def test_a_model_importing_tooling_it_did_not_record_fails_validation(
    tmp_path, shared_cache, module
):
    from importlib.metadata import version

    class ImportsTooling(envkit.pyfunc.PythonModel):  # pickled by value (a local class)
        def predict(self, context, model_input, params=None):
            import importlib

            # installed wherever envkit's CLI is; this model does not record it
            return [importlib.import_module(module).__name__ for _ in model_input]

    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=ImportsTooling(),
        pip_requirements=[f"cloudpickle=={version('cloudpickle')}"],
    )
    assert module not in (tmp_path / "m" / "requirements.txt").read_text()
    payload = tmp_path / "payload.json"
    payload.write_text('{"inputs": [1, 2]}')
    proc = _cli("validate", str(tmp_path / "m"), "--input", str(payload), home=shared_cache)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"No module named '{module}'" in proc.stdout + proc.stderr


def test_requirements_txt_installed_by_plain_pip_gives_a_working_loader_without_tooling(
    tmp_path, shared_cache
):
    from envkit.sandbox.selfwheel import build_self_wheel

    class Doubler(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [2 * x for x in model_input]

    envkit.pyfunc.save_model(tmp_path / "m", python_model=Doubler())
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = str(target / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # envkit is not on any index (an unrelated project of that name is): its wheel first, as
    # a deployment would provide it; then the model's file, with plain pip.
    wheel = build_self_wheel(shared_cache)
    for argv in ([*pip, str(wheel.path)], [*pip, "-r", str(tmp_path / "m" / "requirements.txt")]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    code = (
        "import sys, envkit.pyfunc; print(envkit.pyfunc.load_model(sys.argv[1]).predict([1, 2, 3]))"
    )
    out = subprocess.run(
        [python, "-I", "-c", code, str(tmp_path / "m")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2, 4, 6]"
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = {row["name"].lower() for row in json.loads(listed.stdout)}
    assert names & TOOLING == set()
    assert {"envkit", "cloudpickle", "pyyaml", "packaging"} <= names
    # envkit deps --check, run in that environment, finds nothing beyond the requirements.
    deps = subprocess.run(
        [python, "-I", "-m", "envkit", "deps", str(tmp_path / "m"), "--check", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deps.returncode == 0, deps.stderr
    assert json.loads(deps.stdout)["unrequested"] == []
