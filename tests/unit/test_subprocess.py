"""The one child-process helper: outcomes, timeouts, and nothing secret in its logs."""

from __future__ import annotations

import logging
import os
import sys
import time

from envkit._subprocess import run


def test_environment_values_never_reach_the_log(caplog):
    env = dict(os.environ)
    env["DATABASE_URL"] = "postgres://user:pw-12345@db/prod"
    env["SENTRY_DSN"] = "https://k-67890@sentry.io/1"
    env.pop("HOME", None)
    with caplog.at_level(logging.DEBUG, logger="envkit"):
        out = run(
            [sys.executable, "-c", "print('ok')", "--index-url", "https://u:tok-555@pypi.x/simple"],
            env=env,
        )
    assert out.ok and out.stdout.strip() == "ok"
    for secret in ("pw-12345", "k-67890", "tok-555"):
        assert secret not in caplog.text
    assert "DATABASE_URL" in caplog.text and "SENTRY_DSN" in caplog.text
    assert "drops: HOME" in caplog.text


def test_a_timeout_kills_the_process_group_and_says_so():
    start = time.perf_counter()
    # The grandchild holds our pipes: only killing the whole group lets the call return.
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    out = run([sys.executable, "-c", code], timeout=1)
    assert out.timed_out and not out.ok and out.returncode is None
    assert time.perf_counter() - start < 30


def test_children_die_with_a_killed_envkit(tmp_path):
    # A process that runs a long child through envkit's helper, then is SIGKILLed itself.
    import signal
    import subprocess

    pid_file = tmp_path / "child.pid"
    child_code = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    )
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys\n"
        "from envkit._subprocess import run\n"
        f"run([sys.executable, '-c', {child_code!r}])\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the child outlived the killed parent")
