"""The ``uv`` backend (default): ``uv venv`` + ``uv pip install``, never downloading a Python.

uv does not read pip's configuration. Behind a proxy or a private index, uv honours its own
``UV_*`` variables, ``HTTPS_PROXY`` and ``SSL_CERT_FILE`` (or ``UV_NATIVE_TLS=1`` for the
system store); for convenience envkit also hands pip's ``PIP_INDEX_URL``,
``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS`` and ``PIP_CERT`` to uv when the uv equivalent is
not set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from envkit._subprocess import run
from envkit.sandbox.backends.base import (
    STEP_BUILD_DEPENDENCIES,
    STEP_ENVKIT_OVER_LOCK,
    STEP_LOCKED,
    VenvBackend,
    check_install,
    child_environment,
)
from envkit.sandbox.interpreters import find_uv

if TYPE_CHECKING:
    from envkit.sandbox.backends.base import InstallFiles, ToolRunner
    from envkit.sandbox.interpreters import Interpreter

_PIP_TO_UV = {
    "PIP_INDEX_URL": "UV_INDEX_URL",
    "PIP_EXTRA_INDEX_URL": "UV_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS": "UV_FIND_LINKS",
}


def uv_environment() -> dict[str, str]:
    """The environment for uv: never download a Python; pip's index/cert settings passed on."""
    # copy, never hard-link from uv's cache: a file changed in one environment would change
    # uv's cache and every environment linked to it.
    env = child_environment(
        {"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "UV_LINK_MODE": "copy"}
    )
    for pip_name, uv_name in _PIP_TO_UV.items():
        if env.get(pip_name) and not env.get(uv_name):
            env[uv_name] = env[pip_name]
            if uv_name == "UV_FIND_LINKS":  # pip separates them with spaces, uv with commas
                env[uv_name] = ",".join(env[pip_name].split())
    if not env.get("SSL_CERT_FILE") and not env.get("UV_NATIVE_TLS"):
        for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            if env.get(name) and os.path.isfile(env[name]):
                env["SSL_CERT_FILE"] = env[name]
                break
    return env


class UvBackend(VenvBackend):
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

    def installer_environment(self) -> dict[str, str]:
        return uv_environment()

    def venv_command(self, interpreter: Interpreter, target: Path) -> tuple[list[str], str]:
        assert self._uv is not None
        argv = [self._uv, "venv", "--quiet", "--no-project", "--allow-existing"]
        argv += ["--python", str(interpreter.path), str(target)]
        return argv, f"creating a virtual environment with uv for Python {interpreter.version}"

    def install(self, python: Path, files: InstallFiles, tool: ToolRunner) -> None:
        assert self._uv is not None
        install = [self._uv, "pip", "install", "--python", str(python)]
        constraints = ["-c", str(files.constraints)] if files.constraints else []
        requirements = ["-r", str(files.requirements), *constraints]
        locked = files.unhashed is not None  # a lock: its hashes checked, then envkit over it
        if files.build is not None:
            # One resolve for both is faster; when they conflict, do what pip-based tools
            # (and MLflow) do: build dependencies first, then the requirements over them. A
            # lock goes alone (the build dependencies have no hashes in it), and so do build
            # dependencies held to an older model's time (not its requirements, nor envkit).
            together = not locked and not files.exclude_newer
            if together and tool([*install, "-r", str(files.build), *requirements]).ok:
                return
            newer = _exclude_newer(files.build, files.exclude_newer)
            check_install(
                tool([*install, *newer, "-r", str(files.build)]),
                "installing the build dependencies (python_env.yaml) with uv",
                STEP_BUILD_DEPENDENCIES,
            )
        if locked:
            check_install(
                tool([*install, "--require-hashes", *requirements]),
                "installing the model's requirements.lock (hashes checked) with uv",
                STEP_LOCKED,
            )
            check_install(
                tool([*install, *files.second_step()]),
                "installing envkit over the lock with uv",
                STEP_ENVKIT_OVER_LOCK,
            )
            return
        check_install(
            tool([*install, *requirements]), "installing the model's requirements with uv"
        )


def _exclude_newer(build: Path, when: str) -> list[str]:
    """uv arguments holding the unpinned build dependencies (only) to releases before ``when``
    (a pinned one keeps its pin, whatever its date)."""
    if not when:
        return []
    from envkit.sandbox.spec import requirement_name

    lines = [ln.strip() for ln in build.read_text(encoding="utf-8").splitlines() if ln.strip()]
    names = [requirement_name(ln) for ln in lines if "==" not in ln and " @ " not in ln]
    return [f"--exclude-newer-package={name}={when}" for name in names if name]
