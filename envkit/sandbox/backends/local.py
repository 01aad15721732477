"""The ``local`` backend: the current interpreter as it is, for debugging.

Nothing is installed and nothing is isolated: the model sees the host's packages, so a
missing requirement is *not* caught. Reports say so.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from envkit._subprocess import Outcome, run
from envkit.sandbox.backends.base import Backend, Environment, InstallPlan
from envkit.sandbox.cache import BuildInfo

if TYPE_CHECKING:
    from envkit.sandbox.interpreters import Interpreter
    from envkit.sandbox.spec import EnvSpec


class LocalBackend(Backend):
    name = "local"
    description = "the current interpreter, no install and no isolation (debugging only)"
    needs_interpreter = False
    cacheable = False
    isolated = False

    def create(
        self,
        spec: EnvSpec,
        target: Path,
        *,
        interpreter: Interpreter | None,
        plan: InstallPlan,
        timeout: float | None = None,
    ) -> BuildInfo:
        return BuildInfo(python=platform.python_version(), python_path=sys.executable)

    def run(
        self,
        env: Environment,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        paths: Sequence[Path] = (),
    ) -> Outcome:
        """Run with this process's environment as it is (PYTHONPATH included)."""
        command = list(argv)
        if command and command[0] == "python":
            command = [sys.executable, *command[1:]]
        return run(command, env={**os.environ, **(extra_env or {})}, cwd=cwd, timeout=timeout)

    def open(self, path: Path) -> Environment:
        return Environment(
            path=Path(sys.prefix),
            python=Path(sys.executable),
            backend=self.name,
            python_flags=(),
            isolated=False,
        )
