"""The ``conda`` backend: ``conda env create`` from the model's ``conda.yaml`` spec.

Available only where a conda, mamba or micromamba executable exists (``CONDA_EXE``,
``MAMBA_EXE`` or on PATH). Conda installs the recorded Python itself, so no local
interpreter is needed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from envkit._subprocess import run
from envkit.sandbox.backends.base import Backend, InstallPlan, PythonChoice, child_environment
from envkit.sandbox.cache import BuildInfo

if TYPE_CHECKING:
    from envkit.sandbox.spec import EnvSpec

_EXECUTABLES = ("mamba", "micromamba", "conda")


def find_conda() -> str | None:
    for variable in ("MAMBA_EXE", "CONDA_EXE"):
        value = os.environ.get(variable)
        if value and os.path.isfile(value) and os.access(value, os.X_OK):
            return value
    for name in _EXECUTABLES:
        found = shutil.which(name)
        if found:
            return found
    return None


class CondaBackend(Backend):
    name = "conda"
    description = "a conda environment from conda.yaml (needs conda, mamba or micromamba)"
    needs_interpreter = False

    def __init__(self) -> None:
        self._exe = find_conda()

    def unavailable_reason(self) -> str | None:
        if self._exe is None:
            return (
                "no conda, mamba or micromamba executable found (checked CONDA_EXE, MAMBA_EXE "
                "and PATH); install Miniforge or use --env-manager uv"
            )
        return None

    def tool_versions(self) -> dict[str, str]:
        if self._exe is None:
            return {}
        outcome = run([self._exe, "--version"], timeout=60)
        return {Path(self._exe).name: outcome.stdout.strip().split()[-1] if outcome.ok else "?"}

    def create(
        self,
        spec: EnvSpec,
        target: Path,
        *,
        python: PythonChoice,
        plan: InstallPlan,
        timeout: float | None = None,
    ) -> BuildInfo:
        import yaml

        assert self._exe is not None
        meta = target.parent / f".{target.name}.conda"
        meta.mkdir(parents=True, exist_ok=True)
        files = plan.write(meta)
        pip_section = [f"-r {files.requirements}"]
        if files.constraints is not None:
            pip_section.append(f"-c {files.constraints}")
        dependencies: list[object] = [f"python={spec.python}"]
        dependencies += [d for d in spec.conda_dependencies if not d.startswith("python")]
        if not any(str(d).split("=")[0].split("<")[0] == "pip" for d in dependencies):
            dependencies.append("pip")
        dependencies.append({"pip": pip_section})
        env_file = meta / "environment.yaml"
        env_file.write_text(
            yaml.safe_dump(
                {
                    "channels": list(spec.conda_channels) or ["conda-forge"],
                    "dependencies": dependencies,
                },
                sort_keys=False,
            ),
            encoding="utf-8",
        )
        start = time.perf_counter()
        target.rmdir()  # conda refuses to create into an existing directory
        try:
            run(
                [
                    self._exe,
                    "env",
                    "create",
                    "--yes",
                    "--quiet",
                    "--prefix",
                    str(target),
                    "--file",
                    str(env_file),
                ],
                env=child_environment(),
                cwd=meta,
                timeout=timeout,
            ).check("creating the conda environment")
        finally:
            target.mkdir(exist_ok=True)
            shutil.rmtree(meta, ignore_errors=True)
        return BuildInfo(
            python=spec.python,
            python_path=str(target / "bin" / "python"),
            tools=self.tool_versions(),
            timings={"install": time.perf_counter() - start},
        )
