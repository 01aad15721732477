"""The tox plugin: ``envkit_model = DIR`` makes a tox 4 environment the model's environment.

Real tox 4 (the one envkit's test extra installs), real virtualenvs and pip, in a throw-away
project; the model's one requirement is a wheel the test owns (a local --find-links directory).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import write_code_model  # (tests/e2e/conftest.py)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TOX_INI = """
[tox]
env_list = model
skip_missing_interpreters = false

[testenv:model]
envkit_model = leaf
commands =
    python -c "import ekleaf; print('LEAF', ekleaf.VERSION)"
    python -c "import envkit.pyfunc as f; print('PRED', f.load_model('leaf').predict([1, 2]))"
    python -m pip list --format freeze
"""


def _tox(project: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOX_")}
    return subprocess.run(
        [sys.executable, "-m", "tox", "-e", "model"],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=800,
    )


def test_a_tox_environment_installs_the_models_requirements_and_follows_them(tmp_path, local_index):
    project = tmp_path / "project"
    project.mkdir()
    (project / "tox.ini").write_text(textwrap.dedent(TOX_INI))
    model = write_code_model(
        project,
        "leaf",
        "return [len(model_input)]",
        requirements=[f"--find-links {local_index.directory}", "ektest-leaf==1.0.0"],
    )
    first = _tox(project)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "LEAF 1.0.0" in first.stdout and "PRED [2]" in first.stdout
    frozen = {line.split("==")[0].lower() for line in first.stdout.splitlines() if "==" in line}
    assert {"ektest-leaf", "envkit"} <= frozen
    assert not frozen & {"tox", "virtualenv", "uv", "rich", "filelock"}  # none of the tooling

    # The model's environment files change: tox recreates the environment from them.
    requirements = model / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("==1.0.0", "==2.0.0"))
    second = _tox(project)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    assert "LEAF 2.0.0" in second.stdout
    assert "recreate" in second.stdout.lower()


def test_an_unreadable_model_fails_tox_with_envkits_reason(tmp_path):
    project = tmp_path / "project"
    (project / "leaf").mkdir(parents=True)
    (project / "tox.ini").write_text(textwrap.dedent(TOX_INI))
    proc = _tox(project)
    assert proc.returncode != 0
    assert "envkit_model = " in proc.stdout + proc.stderr
    assert "MLmodel" in proc.stdout + proc.stderr
