"""The ``virtualenv`` backend: ``virtualenv`` + ``pip``, the way MLflow and pip users build.

pip reads its own configuration (``pip.conf``, ``PIP_*``), so local wheel directories,
mirrors and constraints configured for pip apply: with the packages in pip's cache or a
``--find-links`` directory this backend works offline. virtualenv seeds pip from its bundled
wheels, never from the network.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from envkit.sandbox.backends.base import (
    STEP_BUILD_DEPENDENCIES,
    STEP_ENVKIT_OVER_LOCK,
    STEP_LOCKED,
    VenvBackend,
    check_install,
    child_environment,
)

if TYPE_CHECKING:
    from envkit.sandbox.backends.base import InstallFiles, ToolRunner
    from envkit.sandbox.interpreters import Interpreter


class VirtualenvBackend(VenvBackend):
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

    def installer_environment(self) -> dict[str, str]:
        return child_environment({"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"})

    def venv_command(self, interpreter: Interpreter, target: Path) -> tuple[list[str], str]:
        argv = [sys.executable, "-m", "virtualenv", "--quiet", "--no-periodic-update"]
        argv += ["--python", str(interpreter.path), str(target)]
        return argv, f"creating a virtualenv for Python {interpreter.version}"

    def install(self, python: Path, files: InstallFiles, tool: ToolRunner) -> None:
        pip = [str(python), "-I", "-m", "pip", "install", "--no-input"]
        if files.build is not None:
            check_install(
                tool([*pip, "-r", str(files.build)]),
                "installing the build dependencies (python_env.yaml) with pip",
                STEP_BUILD_DEPENDENCIES,
            )
        argv = [*pip, "-r", str(files.requirements)]
        if files.constraints is not None:
            argv += ["-c", str(files.constraints)]
        if files.unhashed is not None:  # a lock: its hashes checked, then envkit over it
            check_install(
                tool([*argv, "--require-hashes"]),
                "installing the model's requirements.lock (hashes checked) with pip",
                STEP_LOCKED,
            )
            check_install(
                tool([*pip, *files.second_step()]),
                "installing envkit over the lock with pip",
                STEP_ENVKIT_OVER_LOCK,
            )
            return
        check_install(tool(argv), "installing the model's requirements with pip")

    def built_tools(self, python: Path, tool: ToolRunner) -> dict[str, str]:
        tools = self.tool_versions()
        pip_version = tool([str(python), "-I", "-m", "pip", "--version"])
        if pip_version.ok and pip_version.stdout.startswith("pip "):
            tools["pip"] = pip_version.stdout.split()[1]
        return tools
