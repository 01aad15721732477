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
