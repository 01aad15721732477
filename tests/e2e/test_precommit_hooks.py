"""The pre-commit hooks of ``.pre-commit-hooks.yaml``, run by real pre-commit in a throw-away
repository that holds a model: pre-commit installs envkit from this checkout's HEAD commit into
its own virtualenv, as it would from a tag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


@pytest.fixture
def models_repo(tmp_path, repo_root) -> Path:
    import envkit.pyfunc

    class Echo(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    repo = tmp_path / "models-repo"
    repo.mkdir()
    envkit.pyfunc.save_model(repo / "models" / "echo", python_model=Echo(), input_example=None)
    requirements = (repo / "models" / "echo" / "requirements.txt").read_text().split()
    (repo / "deploy").mkdir()
    (repo / "deploy" / "freeze.txt").write_text("\n".join(requirements) + "\n")
    config = {
        "repos": [
            {
                "repo": str(repo_root),
                "rev": _git("rev-parse", "HEAD", cwd=repo_root),
                "hooks": [
                    {"id": "envkit-deps-check", "args": ["--against", "deploy/freeze.txt"]},
                    {"id": "envkit-validate"},
                ],
            }
        ]
    }
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    _git("init", "-q", cwd=repo)
    _git("add", "-A", cwd=repo)
    return repo


def _pre_commit(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home")}
    env["ENVKIT_HOME"] = str(repo.parent / "envkit-home")
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=800,
    )


def test_the_hooks_pass_a_good_model_and_deps_check_fails_on_a_violated_target(models_repo):
    passed = _pre_commit(models_repo, "--all-files")
    assert passed.returncode == 0, passed.stdout[-4000:] + passed.stderr[-2000:]
    assert "envkit deps (the model's environment files)" in passed.stdout
    assert "envkit validate (changed models)" in passed.stdout

    freeze = models_repo / "deploy" / "freeze.txt"
    freeze.write_text(freeze.read_text().replace("cloudpickle==", "cloudpickle==0.0.1 #"))
    failed = _pre_commit(models_repo, "envkit-deps-check", "--all-files", "--verbose")
    assert failed.returncode == 1, failed.stdout[-4000:]
    assert "VIOLATED] cloudpickle==" in failed.stdout
