"""The host's Java: where its ``java`` is and which major version it runs. Used by the
flavors that record the Java their model runs on (``h2o``) and by the sandbox's check of it
(:mod:`envkit.sandbox.java`)."""

from __future__ import annotations

import os
import re
import shutil

_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def java_executable() -> str | None:
    """``$JAVA_HOME/bin/java``, else ``java`` on ``PATH`` (``None``: no Java here)."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def installed_java_major(java: str) -> int | None:
    """The major version of ``java`` (``java -version``; 8 for 1.8), ``None`` when unknown."""
    from envkit._subprocess import run

    outcome = run([java, "-version"], timeout=60)
    match = _VERSION.search(outcome.stderr + outcome.stdout)
    if not outcome.ok or match is None:
        return None
    first, second = int(match.group(1)), match.group(2)
    return int(second) if first == 1 and second is not None else first
