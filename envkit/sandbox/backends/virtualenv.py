"""The ``virtualenv`` backend: ``virtualenv`` + ``pip``, the way MLflow and pip users build.

pip reads its own configuration (``pip.conf``, ``PIP_*``), so local wheel directories,
mirrors and constraints configured for pip apply: with the packages in pip's cache or a
``--find-links`` directory this backend works offline. virtualenv seeds pip from its bundled
wheels, never from the network.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from envkit._subprocess import run
from envkit.sandbox.backends.base import (
    Backend,
    InstallPlan,
    check_install,
    child_environment,
    venv_python,
)
from envkit.sandbox.cache import BuildInfo

if TYPE_CHECKING:
    from envkit.sandbox.interpreters import Interpreter
    from envkit.sandbox.spec import EnvSpec


class VirtualenvBackend(Backend):
    name = "virtualenv"
    description = "a virtualenv filled by pip (honours pip.conf: local wheels, mirrors)"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("virtualenv") is None:
            return "the virtualenv package is not installed here (pip install virtualenv)"
        return None

    def tool_versions(self) -> dict[str, str]:
        try:
            return {"virtualenv": metadata.version("virtualenv")}
        except metadata.PackageNotFoundError:
            return {}

    def create(
        self,
        spec: EnvSpec,
        target: Path,
        *,
        interpreter: Interpreter | None,
        plan: InstallPlan,
        timeout: float | None = None,
    ) -> BuildInfo:
        assert interpreter is not None
        env = child_environment({"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"})
        timings: dict[str, float] = {}
        start = time.perf_counter()
        run(
            [
                sys.executable,
                "-m",
                "virtualenv",
                "--quiet",
                "--no-periodic-update",
                "--python",
                str(interpreter.path),
                str(target),
            ],
            env=env,
            cwd=target,
            timeout=timeout,
        ).check(f"creating a virtualenv for Python {interpreter.version}")
        timings["create"] = time.perf_counter() - start
        python = venv_python(target)
        pip = [str(python), "-I", "-m", "pip", "install", "--no-input"]
        start = time.perf_counter()
        with plan.staged(target) as files:
            if files.build is not None:
                outcome = run([*pip, "-r", str(files.build)], env=env, cwd=target, timeout=timeout)
                check_install(
                    outcome, "installing the build dependencies (python_env.yaml) with pip"
                )
            argv = [*pip, "-r", str(files.requirements)]
            if files.constraints is not None:
                argv += ["-c", str(files.constraints)]
            outcome = run(argv, env=env, cwd=target, timeout=timeout)
            check_install(outcome, "installing the model's requirements with pip")
        timings["install"] = time.perf_counter() - start
        tools = self.tool_versions()
        pip_version = run([str(python), "-I", "-m", "pip", "--version"], env=env, timeout=60)
        if pip_version.ok and pip_version.stdout.startswith("pip "):
            tools["pip"] = pip_version.stdout.split()[1]
        return BuildInfo(
            python=interpreter.version,
            python_path=str(interpreter.path),
            tools=tools,
            timings=timings,
        )
