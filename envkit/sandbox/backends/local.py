"""The ``local`` backend: the current interpreter as it is, for debugging.

Nothing is installed and nothing is isolated: the model sees the host's packages, so a
missing requirement is *not* caught. Reports say so. Not cacheable, so nothing is ever
created: :meth:`open` is the environment, and it runs with this process's environment as it
is (PYTHONPATH included).
"""

from __future__ import annotations

import sys
from pathlib import Path

from envkit.sandbox.backends.base import Backend, Environment, PythonChoice


class LocalBackend(Backend):
    name = "local"
    description = "the current interpreter, no install and no isolation (debugging only)"
    needs_interpreter = False
    cacheable = False
    isolated = False

    def choose_python(self, recorded: str, requested: str | None) -> PythonChoice:
        """This interpreter, whatever was recorded; another ``--python`` is refused."""
        import platform

        from envkit.errors import UsageError

        running = platform.python_version()
        if requested and running.split(".")[: len(requested.split("."))] != requested.split("."):
            raise UsageError(
                f"--python {requested} cannot be used with the local backend, which runs "
                f"this interpreter (Python {running})"
            )
        return PythonChoice(
            version=running,
            recorded=recorded,
            requested=requested or recorded,
            found_by="current",
            exact=running == recorded,
            path=sys.executable,
        )

    def open(self, path: Path) -> Environment:
        return Environment(
            path=Path(sys.prefix),
            python=Path(sys.executable),
            backend=self.name,
            python_flags=(),
            isolated=False,
        )
