"""A cached environment cannot be poisoned: environments are copies (uv's link mode copy),
so a change to one reaches no other; a change to one is noticed on the next hit (its
manifest) and the environment is rebuilt, never blamed on the model; `env verify` checks
every file's hash against its distribution's RECORD."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True, text=True, env={**os.environ, "ENVKIT_HOME": str(home)}, timeout=900,
    )  # fmt: skip


def _validate(home: Path, model: Path) -> dict:
    proc = _cli(home, "validate", str(model), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _site(report: dict) -> Path:
    [site] = Path(report["cache"]["path"]).glob("lib/python*/site-packages")
    return site


def test_a_change_to_one_environment_reaches_no_other_and_is_rebuilt(
    double_model, models_dir, cache_root
):
    from importlib.metadata import version

    import envkit.pyfunc

    class Sibling(envkit.pyfunc.PythonModel):  # pickled by value (a local class)
        def predict(self, context, model_input, params=None):
            return [2 * int(v) for v in model_input.iloc[:, 0]]

    # Another environment with the same pandas (another spec: pyyaml too).
    sibling = models_dir / "sibling"
    pins = [f"{name}=={version(name)}" for name in ("pandas", "numpy", "pyyaml")]
    envkit.pyfunc.save_model(
        sibling, python_model=Sibling(), input_example=[1, 2], pip_requirements=pins
    )
    first, other = _validate(cache_root, double_model), _validate(cache_root, sibling)
    assert first["cache"]["key"] != other["cache"]["key"]
    target = _site(first) / "pandas" / "__init__.py"
    untouched = _site(other) / "pandas" / "__init__.py"
    assert not os.path.samefile(target, untouched)  # copies, not links to one file
    size = untouched.stat().st_size
    target.write_text("")  # truncated in place, as a model writing its environment would
    assert untouched.stat().st_size == size
    again = _validate(cache_root, double_model)
    assert again["cache"]["hit"] is False
    assert "was modified after envkit built it (changed " in again["cache"]["reason"]
    assert "pandas/__init__.py" in again["cache"]["reason"]
    assert _validate(cache_root, sibling)["cache"]["hit"] is True


def test_a_planted_sitecustomize_never_runs(double_model, cache_root, tmp_path):
    report = _validate(cache_root, double_model)
    marker = tmp_path / "sitecustomize-ran"
    (_site(report) / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    again = _validate(cache_root, double_model)
    assert (
        "added lib/python" in again["cache"]["reason"]
        and "sitecustomize.py" in again["cache"]["reason"]
    )
    assert not marker.exists()
    assert _validate(cache_root, double_model)["cache"]["hit"] is True


def test_env_verify_finds_a_modified_file_and_fix_removes_the_environment(double_model, cache_root):
    report = _validate(cache_root, double_model)
    assert _cli(cache_root, "env", "verify").returncode == 0
    numpy_init = _site(report) / "numpy" / "__init__.py"
    stat = numpy_init.stat()
    numpy_init.write_text(numpy_init.read_text().replace("import", "import ", 1))
    os.utime(numpy_init, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime, other bytes
    found = _cli(cache_root, "env", "verify", "--format", "json")
    assert found.returncode == 1
    [row] = json.loads(found.stdout)
    assert any("numpy/__init__.py (content differs from RECORD)" in p for p in row["problems"])
    assert _cli(cache_root, "env", "verify", "--fix").returncode == 1
    assert not Path(report["cache"]["path"]).exists()
    assert _cli(cache_root, "env", "verify").returncode == 0  # nothing left to check


def test_a_killed_build_leaves_its_installer_temporary_files_where_prune_removes_them(
    double_model, cache_root
):
    """pip's temporary directories (tens of MB) go into the build's own directory, not the
    host's /tmp: a build killed mid-install leaves them where the cache finds them."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "envkit", "validate", str(double_model), "--env-manager",
         "virtualenv"],
        env={**os.environ, "ENVKIT_HOME": str(cache_root)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    scratch: list[Path] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            scratch = [p for p in cache_root.rglob(".envkit-tmp") if any(p.iterdir())]
            if scratch:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert scratch, "the installer never wrote temporary files into the build directory"
    assert _cli(cache_root, "env", "prune").returncode == 0
    assert not any(p.exists() for p in scratch)


def test_a_run_without_containment_writes_no_bytecode_into_the_environment(double_model, tmp_path):
    """``-I`` makes Python ignore PYTHONDONTWRITEBYTECODE: a --no-contain run (whose environment
    is writable) wrote bytecode into the cached environment, and the next use found it modified
    and rebuilt it, under any process still running from it. The model's Python runs with -B."""
    home = tmp_path / "home"  # an empty bytecode store: the first run imports sources
    proc = _cli(home, "validate", str(double_model), "--no-contain", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = json.loads(proc.stdout)
    again = _validate(home, double_model)
    assert again["cache"]["hit"], again["cache"]
    assert again["cache"]["path"] == first["cache"]["path"]
