"""The model's process is contained: no host secrets, no network, read-only inputs and
environment, limits; what held is in the report. A probe model reports what it sees."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROBE = """
import hashlib, json, os, resource, socket, sys

import envkit.models
import envkit.pyfunc


def can_write(directory):
    try:
        with open(os.path.join(directory, "written-by-the-model"), "w"):
            pass
        return True
    except OSError:
        return False


def readable(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def can_connect():
    try:
        socket.create_connection(("127.0.0.1", int(os.environ.get("PROBE_PORT", "9"))), 2)
        return True
    except OSError:
        return False


class Probe(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        here = os.path.dirname(os.path.abspath(__file__))
        return [json.dumps({
            # (a digest: envkit redacts the value itself wherever it would show it)
            "secret": hashlib.sha256(os.environ["ENVKIT_PROBE_SECRET"].encode()).hexdigest()
            if "ENVKIT_PROBE_SECRET" in os.environ else None,
            "home": os.environ.get("HOME"),
            "interfaces": sorted(name for _, name in socket.if_nameindex()),
            "connect": can_connect(),
            "model_writable": can_write(here),
            # (asked, not tried: an uncontained run must not leave files there)
            "env_writable": os.access(sys.prefix, os.W_OK),
            # every other cached environment, and the host's own files
            "cache_writable": os.access(os.path.dirname(sys.prefix), os.W_OK),
            "etc_writable": os.access("/etc", os.W_OK),
            "cwd_writable": can_write(os.getcwd()),
            "memory_limit": resource.getrlimit(resource.RLIMIT_AS)[0],
            "uid": os.getuid(),
            "host_home": sorted(os.listdir(HOST_HOME)) if os.path.isdir(HOST_HOME) else None,
            "host_secret": readable(os.path.join(HOST_HOME, SECRET_NAME)),
        })]


envkit.models.set_model(Probe())
"""


SECRET_NAME = f".envkit-probe-secret-{os.getpid()}"


@pytest.fixture(scope="module")
def probe_model(tmp_path_factory) -> Path:
    """The probe model, and a file in this user's home that the model must not see."""
    import envkit.pyfunc

    root = tmp_path_factory.mktemp("containment")
    code = root / "probe_code.py"
    constants = f"HOST_HOME = {str(Path.home())!r}\nSECRET_NAME = {SECRET_NAME!r}\n"
    code.write_text(constants + textwrap.dedent(PROBE))
    envkit.pyfunc.save_model(root / "probe", python_model=str(code), pip_requirements=[])
    (root / "payload.json").write_text('{"inputs": [1]}')
    secret = Path.home() / SECRET_NAME
    secret.write_text("aws_secret_access_key = planted")
    try:
        yield root
    finally:
        secret.unlink()


def _predict(probe_model: Path, home: Path, *flags: str) -> dict:
    env = {**os.environ, "ENVKIT_HOME": str(home), "ENVKIT_PROBE_SECRET": "s3cr3t-v4lue-42"}
    proc = subprocess.run(
        [sys.executable, "-m", "envkit", "predict", str(probe_model / "probe"),
         "--input", str(probe_model / "payload.json"), *flags],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(json.loads(proc.stdout)["predictions"][0])


def test_the_model_sees_no_secret_no_network_and_cannot_write_its_inputs(probe_model, shared_cache):
    seen = _predict(probe_model, shared_cache)
    assert seen["secret"] is None  # the host's variables stay on the host
    assert seen["home"] != os.environ.get("HOME")
    assert seen["interfaces"] == ["lo"] and seen["connect"] is False
    assert seen["model_writable"] is False and seen["env_writable"] is False
    assert seen["cache_writable"] is False and seen["etc_writable"] is False
    assert seen["cwd_writable"] is True  # its private work directory
    assert 0 < seen["memory_limit"] < 2**62
    assert not (probe_model / "probe" / "written-by-the-model").exists()
    # The home directory is hidden: only the run's own paths in it (the cache, the
    # interpreter) are there, and no file of the user's; as root the model runs as nobody.
    assert seen["host_secret"] is None
    assert SECRET_NAME not in (seen["host_home"] or [])
    assert seen["uid"] == (65534 if os.geteuid() == 0 else os.geteuid())


def test_a_variable_passed_by_name_reaches_the_model(probe_model, shared_cache):
    seen = _predict(probe_model, shared_cache, "--env", "ENVKIT_PROBE_SECRET")
    assert seen["secret"] == hashlib.sha256(b"s3cr3t-v4lue-42").hexdigest()
    assert seen["interfaces"] == ["lo"]  # the rest still holds


def test_no_contain_opts_out_and_the_report_says_what_held(probe_model, shared_cache):
    seen = _predict(probe_model, shared_cache, "--no-contain")
    assert seen["secret"] == hashlib.sha256(b"s3cr3t-v4lue-42").hexdigest()
    assert seen["host_secret"] == "aws_secret_access_key = planted"  # opted out: all of it
    assert len(seen["interfaces"]) > 1
    env = {**os.environ, "ENVKIT_HOME": str(shared_cache)}
    argv = [sys.executable, "-m", "envkit", "validate", str(probe_model / "probe"), "--input",
            str(probe_model / "payload.json"), "--format", "json"]  # fmt: skip
    report = json.loads(subprocess.run(argv, capture_output=True, text=True, env=env).stdout)
    held = report["containment"]
    assert {"environment", "network", "filesystem", "limits", "user", "home"} <= set(held)
    assert held["network"]["held"] and held["filesystem"]["held"] and held["environment"]["held"]
    assert held["home"]["held"] and held["user"]["held"], held
    argv.append("--no-contain")
    report = json.loads(subprocess.run(argv, capture_output=True, text=True, env=env).stdout)
    assert report["containment"] == {"contained": {"held": False, "detail": "--no-contain"}}


def test_a_model_file_closed_to_others_runs_from_a_readable_copy_never_as_root(
    probe_model, shared_cache, tmp_path
):
    """safetensors writes weights 0600 (MLflow's transformers models have such files): the run
    still drops root, loading a copy others can read, and the report says so. A closed file
    must not buy a model root."""
    import shutil

    model = tmp_path / "closed"
    shutil.copytree(probe_model / "probe", model)
    closed = next(model.rglob("probe_code.py"))
    closed.chmod(0o600)
    env = {**os.environ, "ENVKIT_HOME": str(shared_cache)}
    argv = [sys.executable, "-m", "envkit", "validate", str(model), "--input",
            str(probe_model / "payload.json"), "--format", "json"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["headline"]
    assert report["containment"]["user"]["held"], report["containment"]["user"]
    if os.geteuid() == 0:
        name = closed.relative_to(model).as_posix()
        assert (
            f"{name} of the model cannot be read by other users: it ran, as an unprivileged "
            "user, from a copy that they can read"
        ) in report["warnings"]
    assert closed.stat().st_mode & 0o777 == 0o600
