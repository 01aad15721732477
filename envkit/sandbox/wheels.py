"""Wheeled models: a copy of a model with every requirement as a wheel in ``wheels/``, which
installs with no package index (``--no-index``, every wheel a direct reference).

The layout is MLflow's (``mlflow.models.wheeled_model``): ``wheels/``, a ``requirements.txt``
of ``wheels/<file>`` lines, the original kept as ``original_requirements.txt``, and a
``wheels`` mapping in MLmodel (``platform``). It lives in the sandbox layer because envkit
itself (never on an index) goes in as a wheel of the running envkit.
"""

from __future__ import annotations

import os
import platform as _platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envkit.errors import EnvironmentBuildError, UsageError

if TYPE_CHECKING:
    from envkit.sandbox.spec import EnvSpec

__all__ = [
    "WHEELS_DIR",
    "WheeledModel",
    "add_wheels",
    "offline_spec",
    "wheel_files",
    "wheeled_requirements",
]

WHEELS_DIR = "wheels"
ORIGINAL_REQUIREMENTS = "original_requirements.txt"


@dataclass
class WheeledModel:
    """What :func:`add_wheels` wrote."""

    path: Path
    wheels: list[str] = field(default_factory=list)
    total_bytes: int = 0
    platform: str = ""
    notes: list[str] = field(default_factory=list)


def wheel_files(model_dir: Path) -> list[Path]:
    """The wheels a wheeled model carries (none for another model)."""
    directory = Path(model_dir) / WHEELS_DIR
    return sorted(directory.glob("*.whl")) if directory.is_dir() else []


def wheeled_requirements(model_dir: Path, requirements: tuple[str, ...]) -> tuple[str, ...]:
    """``requirements`` of a wheeled model with its ``wheels/<file>`` lines made absolute; the
    envkit wheel it carries is left out (the running envkit's wheel goes in instead)."""
    out = []
    for req in requirements:
        if req.startswith(WHEELS_DIR + "/"):
            if Path(req).name.lower().startswith("envkit-"):
                continue
            req = str((Path(model_dir) / req).resolve())
        out.append(req)
    return tuple(out)


def add_wheels(
    model_uri: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    platform: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> WheeledModel:
    """Copy the model at ``model_uri`` to ``output`` (default: ``<model>_wheels`` beside it)
    with every requirement downloaded as a wheel into ``wheels/``; ``platform`` (a wheel
    platform tag, ``manylinux2014_x86_64``) targets another platform than this one (binary
    wheels only). Nothing is left at ``output`` when it fails."""
    import tempfile

    from envkit._fs import staged_directory
    from envkit.deps.recorded import read_recorded_environment
    from envkit.models.model import Model
    from envkit.models.uri import resolve_model_uri

    model_dir = resolve_model_uri(model_uri)
    model = Model.load(model_dir / "MLmodel")
    if model.extra.get(WHEELS_DIR) is not None:
        raise UsageError(f"{model_dir} is already a wheeled model")
    target = Path(output) if output is not None else model_dir.with_name(model_dir.name + "_wheels")
    recorded = read_recorded_environment(model_dir, model)
    lock = recorded.locked()
    listed = lock.listed if lock is not None else recorded.listed
    python = recorded.checked_python()
    with staged_directory(target) as staged, tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        staged.rmdir()
        shutil.copytree(model_dir, staged)
        wheels = staged / WHEELS_DIR
        wheels.mkdir()
        lines = _download_lines(listed.options, listed.requirements, cache_dir)
        _download(lines, wheels, python, platform, no_deps=lock is not None, tmp=tmp)
        if recorded.build_dependencies:
            _download(list(recorded.build_dependencies), wheels, python, platform, False, tmp)
        result = _rewrite(staged, model, platform)
    result.path = target
    return result


def _download_lines(
    options: tuple[str, ...], requirements: tuple[str, ...], cache_dir: object
) -> list[str]:
    """The requirement lines pip downloads: the model's, and envkit with its ``serve`` extra
    from a wheel of the running envkit (the sandbox and the scoring server install it, so its
    dependencies must be among the wheels too)."""
    from envkit.sandbox.cache import EnvCache
    from envkit.sandbox.selfwheel import build_self_wheel
    from envkit.sandbox.spec import requirement_name

    wheel = build_self_wheel(EnvCache(cache_dir).root)  # type: ignore[arg-type]
    lines = [*options, *(r for r in requirements if requirement_name(r) != "envkit")]
    return [*lines, wheel.requirement("[serve]")]


def _download(
    lines: list[str], wheels: Path, python: str, platform: str | None, no_deps: bool, tmp: Path
) -> None:
    """pip wheel (this platform and Python: an sdist is built once into a wheel), else pip
    download for the recorded Python (and ``platform``): binary wheels only, a package with
    none fails, naming it."""
    from envkit._subprocess import run

    if not lines:
        return
    reqfile = tmp / f"requirements-{len(list(tmp.iterdir()))}.txt"
    reqfile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if platform is None and python.split(".")[:2] == running.split("."):
        argv = [*pip, "wheel", "--wheel-dir", str(wheels), "-r", str(reqfile)]
    else:  # another platform or Python than this one: binary wheels resolved for it
        argv = [*pip, "download", "--only-binary=:all:", "--python-version", python]
        argv += ["--platform", platform] if platform is not None else []
        argv += ["--dest", str(wheels), "-r", str(reqfile)]
    if no_deps:
        argv.append("--no-deps")
    outcome = run(argv, timeout=1800)
    if not outcome.ok:
        tail = [ln for ln in outcome.stderr.splitlines() if ln.strip()][-1:] or ["(no output)"]
        raise EnvironmentBuildError(f"downloading the model's wheels failed: {tail[0].strip()}")
    for path in wheels.iterdir():
        if not path.name.endswith(".whl"):
            raise EnvironmentBuildError(f"{path.name} has no wheel for this target (sdist only)")


def _rewrite(staged: Path, model: object, platform: str | None) -> WheeledModel:
    """requirements.txt of ``wheels/<file>`` lines (the original kept), conda.yaml's pip
    section the same, the lock removed (the wheels are the pins), MLmodel's ``wheels``."""
    import yaml

    from envkit.models.model import Model

    assert isinstance(model, Model)
    files = wheel_files(staged)
    names = [f"{WHEELS_DIR}/{p.name}" for p in files]
    requirements = staged / "requirements.txt"
    if requirements.exists():
        shutil.copy2(requirements, staged / ORIGINAL_REQUIREMENTS)
    requirements.write_text("\n".join(names) + "\n", encoding="utf-8")
    (staged / "requirements.lock").unlink(missing_ok=True)
    conda = staged / "conda.yaml"
    if conda.exists():
        env = yaml.safe_load(conda.read_text(encoding="utf-8")) or {}
        for dep in env.get("dependencies", []):
            if isinstance(dep, dict) and "pip" in dep:
                dep["pip"] = list(names)
        conda.write_text(yaml.safe_dump(env, sort_keys=False), encoding="utf-8")
    target_platform = platform or _platform.platform()
    model.extra[WHEELS_DIR] = {"platform": target_platform}
    model.save(staged / "MLmodel")
    size = sum(p.stat().st_size for p in files)
    return WheeledModel(staged, names, size, target_platform)


def offline_spec(model_dir: Path, spec: EnvSpec, *, check_platform: bool = True) -> EnvSpec:
    """The spec of a wheeled model: each wheel of its ``wheels/`` a direct reference, with
    ``--no-index`` (nothing else can come in); with ``check_platform``, wheels this platform
    cannot install are an error before anything is built."""
    from dataclasses import replace

    from packaging.utils import parse_wheel_filename

    if check_platform:
        from envkit.deps.describe import unsupported_wheels

        bad = unsupported_wheels(wheel_files(model_dir))
        if bad:
            raise EnvironmentBuildError(
                f"the model's wheels are not for this platform ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}); make them here with envkit wheel, or "
                "with --platform for this one"
            )
    # Only wheels install, so nothing is built: the build dependencies the model records are
    # among the carried wheels (add_wheels downloads them), installed with the rest.
    carried = {str(parse_wheel_filename(p.name)[0]): p for p in wheel_files(model_dir)}
    requirements = [_direct(n, p) for n, p in sorted(carried.items()) if n != "envkit"]
    kept = [r for r in spec.requirements if not r.startswith(WHEELS_DIR + "/")]
    return replace(
        spec,
        requirements=tuple(sorted({*requirements, *kept})),
        options=("--no-index",),
        build_dependencies=(),
    )


def _direct(name: str, path: Path) -> str:
    """A direct reference to a carried wheel (a build context copies ``file://`` wheels)."""
    return f"{name} @ {path.resolve().as_uri()}"
