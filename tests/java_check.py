"""The Java check every JVM flavor (spark, h2o) gets from ``envkit validate``, asserted once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def assert_validate_exits_3_without_the_java(
    model_dir: Path, flavor: str, tmp_path: Path, too_old_words: str
) -> None:
    """Checked before anything is built: a JVM too old (a copy of the model asks for Java 99:
    the output holds ``too_old_words``) and no JVM at all (PATH without java, no JAVA_HOME).
    Both exit 3 and leave no environment in the cache."""
    model = tmp_path / "needs-java-99"
    shutil.copytree(model_dir, model)
    mlmodel = yaml.safe_load((model / "MLmodel").read_text())
    mlmodel["flavors"][flavor]["java_major_version"] = 99
    (model / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    env = {**os.environ, "PYTHONPATH": str(REPO), "ENVKIT_HOME": str(tmp_path / "home")}
    argv = [sys.executable, "-m", "envkit", "validate", str(model)]
    too_old = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240)
    assert too_old.returncode == 3, too_old.stderr
    assert too_old_words in too_old.stderr + too_old.stdout
    bin_dir = tmp_path / "bin"  # python without java beside it
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env_no_java = {**env, "PATH": str(bin_dir)}
    env_no_java.pop("JAVA_HOME", None)
    missing = subprocess.run(
        [str(bin_dir / "python"), *argv[1:4], str(model_dir)],
        capture_output=True,
        text=True,
        env=env_no_java,
        timeout=240,
    )
    assert missing.returncode == 3, missing.stderr
    assert "no java is installed" in missing.stderr + missing.stdout
    envs = tmp_path / "home" / "envs"
    assert not envs.exists() or not any(envs.iterdir())
