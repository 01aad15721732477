"""Bad input reaches the right exit through a real uv environment (issue 13, part 4)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

SECRET = "TOP-SECRET-LINE-do-not-echo"


def envkit_cli(*args: str, home: Path, drop: tuple[str, ...] = ()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True,
        text=True,
        env={**env, "ENVKIT_HOME": str(home)},
        timeout=900,
    )


def assert_exit(cli, code: int, *, words: str = "", never: tuple[str, ...] = ()) -> None:
    assert cli.returncode == code, cli.stdout + cli.stderr
    lines = cli.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], cli.stderr
    for text in never:
        assert text not in cli.stdout + cli.stderr


def tree_state(root: Path) -> dict[str, int]:
    state = {".": root.stat().st_mtime_ns}
    for path in sorted(root.rglob("*")):
        state[str(path.relative_to(root))] = path.lstat().st_mtime_ns
    return state


@pytest.fixture
def model(double_model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(double_model, tmp_path / "a" / "model"))


def test_validate_through_uv_leaves_the_model_directory_untouched(model, shared_cache):
    before = tree_state(model)
    cli = envkit_cli("validate", str(model), home=shared_cache, drop=("PYTHONDONTWRITEBYTECODE",))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert tree_state(model) == before


def test_a_loader_module_missing_from_the_environment_is_exit_1(model, shared_cache):
    mlmodel = model / "MLmodel"
    data = yaml.safe_load(mlmodel.read_text())
    data["flavors"]["python_function"]["loader_module"] = "mlflow.paddle"
    mlmodel.write_text(yaml.safe_dump(data))
    cli = envkit_cli("validate", str(model), home=shared_cache)
    assert_exit(cli, 1, words="mlflow.paddle")
    assert "is not installed in the model's environment" in cli.stdout + cli.stderr


def test_an_include_leaving_the_model_is_refused_before_a_build(model, cache_root):
    (model.parent / "outside.txt").write_text(f"{SECRET}\n")
    requirements = model / "requirements.txt"
    requirements.write_text(requirements.read_text().rstrip("\n") + "\n-r ../outside.txt\n")
    cli = envkit_cli("validate", str(model), home=cache_root)
    assert_exit(cli, 2, words="outside the model directory", never=(SECRET,))
    assert not (cache_root / "envs").exists() or not any((cache_root / "envs").iterdir())
