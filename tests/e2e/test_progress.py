"""Progress while envkit works: on a terminal only, never in JSON or a redirected stream, and
not with --quiet. The command runs on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _on_a_terminal(argv: list[str], home: Path) -> tuple[int, str]:
    """(exit code, everything written) of ``python -m envkit ARGV`` on a pseudo-terminal."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "ENVKIT_HOME": str(home), "COLUMNS": "160", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "envkit", *argv],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        close_fds=True,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    return proc.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")


def test_progress_on_a_terminal_and_none_with_quiet_or_json(double_model, shared_cache):
    code, shown = _on_a_terminal(["validate", str(double_model)], shared_cache)
    assert code == 0, shown[-2000:]
    assert "loading the model and predicting" in shown
    assert "0:00:0" in shown  # the elapsed time column
    assert "OK: the model loaded and predicted" in shown

    code, quiet = _on_a_terminal(["validate", str(double_model), "--quiet"], shared_cache)
    assert code == 0 and "loading the model and predicting" not in quiet
    code, data = _on_a_terminal(["validate", str(double_model), "--format", "json"], shared_cache)
    assert code == 0 and "loading the model and predicting" not in data

    # Redirected (as in CI logs): the report alone.
    env = {**os.environ, "ENVKIT_HOME": str(shared_cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "envkit", "validate", str(double_model)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and "loading the model" not in proc.stdout + proc.stderr
