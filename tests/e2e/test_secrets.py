"""No value of the host's environment and no URL password reaches any output: the CLI's
stdout and stderr, --output files, JSON and JUnit reports, the server's responses and log.

DATABASE_URL's name looks like no secret, yet it holds a password: every variable's value
(longer than 6 characters, paths excepted) is redacted, not only secret-looking names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SECRETS = {
    "DATABASE_URL": "postgresql://dbuser:Pa55w0rd-db@db.internal/prod",
    "ENVKIT_T_SESSION": "sess-7f3a9c1e55b2",
}
INDEX_PASSWORD = "hunter2-index"


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, **SECRETS, "ENVKIT_HOME": str(home)}


def _leaks(text: str) -> list[str]:
    values = [*SECRETS.values(), "Pa55w0rd-db", INDEX_PASSWORD]
    return [v for v in values if v in text]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True, text=True, env=_env(home), timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def leaky_model(tmp_path_factory) -> Path:
    """A model that quotes the secrets it reads in its error."""
    import envkit.pyfunc

    class Leaky(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            import os

            raise ValueError(
                f"cannot reach {os.environ.get('DATABASE_URL')} "
                f"(session {os.environ.get('ENVKIT_T_SESSION')})"
            )

    root = tmp_path_factory.mktemp("secrets")
    envkit.pyfunc.save_model(root / "m", python_model=Leaky())
    (root / "payload.json").write_text('{"inputs": [1]}')
    return root


def test_info_and_deps_never_show_an_index_password(tmp_path):
    import envkit.pyfunc

    class Echo(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    url = f"https://reader:{INDEX_PASSWORD}@pypi.example.invalid/simple"
    with pytest.warns(UserWarning):  # (a literal password in a requirement is warned about)
        envkit.pyfunc.save_model(
            tmp_path / "m", python_model=Echo(), extra_pip_requirements=[f"--extra-index-url {url}"]
        )
    assert INDEX_PASSWORD in (tmp_path / "m" / "requirements.txt").read_text()  # the installer's
    for args in (["info"], ["info", "--format", "json"], ["deps", "--check"],
                 ["deps", "--format", "json"]):  # fmt: skip
        proc = _cli(tmp_path / "home", args[0], str(tmp_path / "m"), *args[1:])
        assert _leaks(proc.stdout + proc.stderr) == [], args


@pytest.mark.parametrize("fmt", ["text", "json", "junit"])
def test_validate_reports_redact_what_the_model_quotes(leaky_model, shared_cache, tmp_path, fmt):
    report = tmp_path / "report.out"
    proc = _cli(
        shared_cache, "validate", str(leaky_model / "m"), "--input",
        str(leaky_model / "payload.json"), "--env", "DATABASE_URL", "--env", "ENVKIT_T_SESSION",
        "--format", fmt, "--output", str(report), "--verbose",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach postgresql://***@" in proc.stdout + proc.stderr + report.read_text()
    assert _leaks(proc.stdout + proc.stderr + report.read_text()) == []


def test_predict_errors_are_redacted(leaky_model, shared_cache):
    proc = _cli(
        shared_cache, "predict", str(leaky_model / "m"), "--input",
        str(leaky_model / "payload.json"), "--env", "DATABASE_URL", "--verbose",
    )  # fmt: skip
    assert proc.returncode == 1
    assert _leaks(proc.stdout + proc.stderr) == []


def test_the_server_answers_an_error_id_and_logs_the_detail_redacted(leaky_model, tmp_path):
    from test_serve import Server, post_json

    server = Server(leaky_model / "m", "--env-manager", "local", env=_env(tmp_path / "home"))
    try:
        server.wait_ready()
        status, body = post_json(server.port, {"inputs": [1]})
    finally:
        server.stop()
    assert status == 500 and "error id" in body["message"]
    assert _leaks(json.dumps(body)) == []
    log = server.output()
    assert "cannot reach postgresql://***@db.internal/prod (session ***)" in log  # redacted
    assert _leaks(log) == []
