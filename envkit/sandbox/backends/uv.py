"""The ``uv`` backend (default): ``uv venv`` + ``uv pip install``, never downloading a Python.

uv does not read pip's configuration. Behind a proxy or a private index, uv honours its own
``UV_*`` variables, ``HTTPS_PROXY`` and ``SSL_CERT_FILE`` (or ``UV_NATIVE_TLS=1`` for the
system store); for convenience envkit also hands pip's ``PIP_INDEX_URL``,
``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS`` and ``PIP_CERT`` to uv when the uv equivalent is
not set.
"""

from __future__ import annotations

import os
import shutil
import time
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

_PIP_TO_UV = {
    "PIP_INDEX_URL": "UV_INDEX_URL",
    "PIP_EXTRA_INDEX_URL": "UV_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS": "UV_FIND_LINKS",
}


def find_uv() -> str | None:
    """The uv executable: the one installed with the ``uv`` package, else ``uv`` on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def uv_environment() -> dict[str, str]:
    """The environment for uv: never download a Python; pip's index/cert settings passed on."""
    env = child_environment({"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"})
    for pip_name, uv_name in _PIP_TO_UV.items():
        if env.get(pip_name) and not env.get(uv_name):
            env[uv_name] = env[pip_name]
    if not env.get("SSL_CERT_FILE") and not env.get("UV_NATIVE_TLS"):
        for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if env.get(name) and os.path.isfile(env[name]):
                env["SSL_CERT_FILE"] = env[name]
                break
    return env


class UvBackend(Backend):
    name = "uv"
    description = "a virtual environment made and filled by uv (fast; uses uv's cache)"

    def __init__(self) -> None:
        self._uv = find_uv()

    def unavailable_reason(self) -> str | None:
        if self._uv is None:
            return "uv is not installed (pip install uv), and no uv executable is on PATH"
        return None

    def tool_versions(self) -> dict[str, str]:
        if self._uv is None:
            return {}
        outcome = run([self._uv, "--version"], timeout=30)
        return {"uv": outcome.stdout.strip().split(" ")[1] if outcome.ok else "?"}

    def create(
        self,
        spec: EnvSpec,
        target: Path,
        *,
        interpreter: Interpreter | None,
        plan: InstallPlan,
        timeout: float | None = None,
    ) -> BuildInfo:
        assert self._uv is not None and interpreter is not None
        env = uv_environment()
        timings: dict[str, float] = {}
        start = time.perf_counter()
        run(
            [
                self._uv,
                "venv",
                "--quiet",
                "--no-project",
                "--allow-existing",
                "--python",
                str(interpreter.path),
                str(target),
            ],
            env=env,
            cwd=target,
            timeout=timeout,
        ).check(f"creating a virtual environment with uv for Python {interpreter.version}")
        timings["create"] = time.perf_counter() - start
        python = venv_python(target)
        start = time.perf_counter()
        with plan.staged(target) as files:
            install = [self._uv, "pip", "install", "--python", str(python)]
            constraints = ["-c", str(files.constraints)] if files.constraints else []
            requirements = ["-r", str(files.requirements), *constraints]
            done = False
            if files.build is not None:
                # One resolve for both is faster; when they conflict, do what pip-based tools
                # (and MLflow) do: build dependencies first, then the requirements over them.
                combined = run(
                    [*install, "-r", str(files.build), *requirements],
                    env=env,
                    cwd=target,
                    timeout=timeout,
                )
                done = combined.ok
                if not done:
                    outcome = run(
                        [*install, "-r", str(files.build)], env=env, cwd=target, timeout=timeout
                    )
                    check_install(
                        outcome, "installing the build dependencies (python_env.yaml) with uv"
                    )
            if not done:
                outcome = run([*install, *requirements], env=env, cwd=target, timeout=timeout)
                check_install(outcome, "installing the model's requirements with uv")
        timings["install"] = time.perf_counter() - start
        return BuildInfo(
            python=interpreter.version,
            python_path=str(interpreter.path),
            tools=self.tool_versions(),
            timings=timings,
        )
