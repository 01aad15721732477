"""Turn a model into a ready environment: the one path validate, predict, serve, build-docker
(and the matrix and Spark features to come) take.

:func:`plan_environment` reads what the model records and decides what goes into its
environment (overrides applied, envkit from a wheel of the running envkit) without building
anything; :func:`provision` chooses the backend, the Python, and builds the plan (or takes it
from the cache), returning a :class:`ProvisionedEnvironment` that runs commands inside it.
Reports are the caller's: everything here is data.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from envkit.errors import EnvironmentBuildError, UsageError
from envkit.models.scan import ModelTrust

if TYPE_CHECKING:
    from envkit._subprocess import Outcome
    from envkit.models.model import Model
    from envkit.sandbox.backends.base import (
        Environment,
        InstallPlan,
        PythonChoice,
        SandboxBackend,
    )
    from envkit.sandbox.cache import BuildInfo, CacheRecord, EnvCache
    from envkit.sandbox.contain import ContainmentPolicy
    from envkit.sandbox.selfwheel import SelfWheel
    from envkit.sandbox.spec import EnvSpec

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BUILD_TIMEOUT",
    "EnvironmentPlan",
    "ProvisionOptions",
    "ProvisionedEnvironment",
    "plan_environment",
    "provision",
]

DEFAULT_BUILD_TIMEOUT = 1800.0
_COMPILE_LOCK_TIMEOUT = 60.0  # seconds to wait for a concurrent build or compile of one key
ProgressCallback = Callable[[str, str], None]


def quiet(_event: str, _message: str) -> None:
    """The progress callback of a caller that wants none."""


@dataclass(frozen=True)
class ProvisionOptions:
    """How to provision a model's environment (``envkit validate``'s environment options).

    ``envkit_extras``: extras of envkit the environment also gets (``serve`` for the scoring
    server), as an override of the recorded ``envkit`` requirement.
    """

    env_manager: str = "uv"
    python: str | None = None
    overrides: tuple[str, ...] = ()
    build_timeout: float | None = DEFAULT_BUILD_TIMEOUT
    use_cache: bool = True
    cache_dir: str | os.PathLike[str] | None = None
    backend_options: Mapping[str, object] = field(default_factory=dict)
    envkit_extras: tuple[str, ...] = ()
    progress: ProgressCallback = quiet
    # What the caller vouches for in the model's pickles (scanned before anything is built).
    trust: ModelTrust = field(default_factory=ModelTrust)

    def __post_init__(self) -> None:
        from envkit._subprocess import check_timeout

        object.__setattr__(self, "python", _check_python_option(self.python))
        object.__setattr__(
            self, "build_timeout", check_timeout(self.build_timeout, "build_timeout")
        )
        if isinstance(self.overrides, str):
            raise UsageError("overrides must be a list of requirements, not a string")
        object.__setattr__(self, "overrides", tuple(self.overrides))
        options = {k: v for k, v in dict(self.backend_options).items() if v is not None}
        object.__setattr__(self, "backend_options", options)


@dataclass
class EnvironmentPlan:
    """What a model's environment holds, decided before anything is built."""

    spec: EnvSpec
    install: InstallPlan
    source: str  # the file the requirements came from (python_env.yaml + requirements.txt...)
    recorded_python: str
    notes: list[str] = field(default_factory=list)  # what the overrides and envkit changed
    wheel: SelfWheel | None = None
    python_recorded: bool = True  # False: no file records a version; the running Python's


@dataclass
class CacheUse:
    """How the environment was obtained: from the cache (hit or built into it), or not."""

    used: bool
    hit: bool
    reason: str
    key: str | None = None
    path: str | None = None
    root: str | None = None
    waited: float = 0.0

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"used": self.used, "hit": self.hit, "reason": self.reason}
        for name in ("key", "path", "root"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.used and self.path is not None:
            data["waited"] = round(self.waited, 3)
        return data


@dataclass
class ProvisionedEnvironment:
    """A ready environment for a model: run commands in it with :meth:`run`; :meth:`close`
    removes what was built only for this use (``--no-cache``)."""

    backend: SandboxBackend
    environment: Environment
    plan: EnvironmentPlan
    python: PythonChoice
    cache: CacheUse
    backend_note: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    scratch: Path | None = None
    bytecode_store: Path | None = None  # shared compiled code (cached environments only)
    _builder: _Builder | None = field(default=None, repr=False)

    @property
    def spec(self) -> EnvSpec:
        return self.plan.spec

    def interpreter(self) -> dict[str, object]:
        """The report's interpreter: the chosen Python, and what the model records (nothing,
        for a model whose files give no version: ``recorded`` is then None and ``assumed``
        says that the running interpreter's version was taken, as MLflow does)."""
        data = self.python.to_dict()
        if not self.plan.python_recorded:
            chosen = self.python.requested != self.python.recorded
            data["recorded"] = None
            data["assumed"] = "the model records no Python version" + (
                "; --python chose it" if chosen else ": the running one's was taken"
            )
        return data

    @property
    def isolated(self) -> bool:
        return self.backend.isolated

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        paths: Sequence[Path] = (),
        writable_paths: Sequence[Path] = (),
        contain: ContainmentPolicy | None = None,
    ) -> Outcome:
        """Run ``argv`` in the environment (``python`` is its interpreter), contained by
        ``contain`` (:mod:`envkit.sandbox.contain`); see
        :meth:`~envkit.sandbox.backends.base.Backend.run`."""
        return self.backend.run(
            self.environment,
            argv,
            cwd=cwd,
            timeout=timeout,
            extra_env=extra_env,
            paths=paths,
            writable_paths=writable_paths,
            contain=contain,
        )

    @property
    def compiles_bytecode(self) -> bool:
        """Whether envkit compiles the sources a run imported, after it (a cached virtual
        environment of a local interpreter, read-only to the model)."""
        return self.backend.cacheable and self.python.interpreter is not None

    def compile_bytecode(self, sources: Sequence[str]) -> float:
        """Compile ``sources`` (files of this environment that a run imported, with no
        bytecode yet) with the environment's own Python, outside any model process; returns
        the seconds it took. The model's own runs never write bytecode into the environment
        (it is read-only to them), so a later run imports what envkit compiled, not what a
        model could have planted (:mod:`envkit.sandbox.bytecode`)."""
        root = os.path.join(str(self.environment.path), "")
        todo = [s for s in sources if s.startswith(root)]
        if not todo or not self.compiles_bytecode or self.bytecode_store is None:
            return 0.0
        from envkit.errors import EnvironmentBuildError
        from envkit.sandbox.bytecode import compile_sources
        from envkit.sandbox.manifest import record_manifest

        builder, key = self._builder, self.cache.key
        if builder is None or key is None:
            return 0.0
        try:
            # Under the key's lock: a concurrent process checking this environment must see
            # it before or after envkit's change, never half-way (files added, manifest not).
            with builder.cache.locked(key, timeout=_COMPILE_LOCK_TIMEOUT):
                result = compile_sources(self.environment.python, self.bytecode_store, todo)
                if result.counts.get("compiled") or result.counts.get("seeded"):
                    record_manifest(self.environment.path)  # envkit's change: manifest follows
        except EnvironmentBuildError:
            return 0.0  # another process holds the environment; a later run compiles
        return result.seconds

    def build(self) -> None:
        """Build the environment (or take it from the cache); a backend without a cache
        (``local``) has nothing to build."""
        if not self.backend.cacheable:
            self.cache = CacheUse(False, False, f"{self.backend.name}: no cache")
            self.timings["install"] = 0.0
            return
        assert self._builder is not None, "prepare() makes the builder"
        self._builder.obtain()

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self) -> ProvisionedEnvironment:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# --- planning ------------------------------------------------------------------------------------


def plan_environment(
    model_dir: Path,
    model: Model,
    *,
    env_manager: str,
    overrides: Sequence[str] = (),
    envkit_extras: Sequence[str] = (),
    python: str | None = None,
    cache_root: Path | None = None,
    with_envkit_wheel: bool = True,
) -> EnvironmentPlan:
    """The environment ``model`` records (read for ``env_manager``), with ``overrides`` applied
    and envkit (with ``envkit_extras``) installed from a wheel of the running envkit."""
    from envkit.deps.recorded import RUNNING_PYTHON
    from envkit.sandbox.backends.base import install_plan
    from envkit.sandbox.spec import apply_overrides, read_model_environment, spec_from_recorded

    conf = model.flavors["python_function"]
    read = read_model_environment(
        model_dir,
        env_manager=env_manager,
        flavor_env=conf.get("env") if isinstance(conf.get("env"), dict) else None,
        python_version_hint=conf.get("python_version"),
    )
    spec = spec_from_recorded(read, installer=env_manager)
    source, recorded = spec.source, spec.python
    notes: list[str] = []
    if model.extra.get("wheels") is not None:
        from envkit.sandbox.wheels import offline_spec

        spec = offline_spec(model_dir, spec, check_platform=env_manager != "docker")
        notes.append("wheeled model: installed from its wheels/ with no index")
    spec = _contemporary_build_tools(spec, model, env_manager, notes)
    if overrides:
        overridden = apply_overrides(spec.requirements, list(overrides))
        spec = replace(spec, requirements=overridden.requirements)
        notes.extend(f"--override: {n}" for n in overridden.notes)
    if python is not None:
        spec = spec.resolved(python=python)
    wheel = None
    if with_envkit_wheel:
        from envkit.sandbox.cache import EnvCache
        from envkit.sandbox.selfwheel import build_self_wheel

        wheel = build_self_wheel(cache_root or EnvCache().root)
        spec = _with_envkit(spec, wheel.version, tuple(envkit_extras), notes)
        spec = spec.resolved(runner=wheel.runner_id)
    install = install_plan(spec, wheel)
    if install.require_hashes:
        notes.append(f"requirements.lock: {len(install.pins)} pins, hashes checked")
    elif spec.hashes and with_envkit_wheel:
        notes.append("requirements.lock: hashes not checked (an --override replaced a locked pin)")
    return EnvironmentPlan(
        spec,
        install,
        source,
        recorded,
        notes,
        wheel,
        python_recorded=read.python_from != RUNNING_PYTHON,
    )


def _contemporary_build_tools(
    spec: EnvSpec, model: Model, env_manager: str, notes: list[str]
) -> EnvSpec:
    """``spec`` with its unpinned build dependencies (an older MLflow model's ``pip``,
    ``setuptools``, ``wheel``) held to releases before the model was made (uv only)."""
    from envkit.sandbox.spec import exclude_newer_for

    unpinned = [b for b in spec.build_dependencies if "==" not in b and " @ " not in b]
    when = exclude_newer_for(model.utc_time_created) if unpinned else None
    if when is None or env_manager != "uv":
        return spec
    notes.append(
        f"build dependencies {', '.join(unpinned)} are unpinned: releases before the model "
        f"was made ({when}) chosen (uv --exclude-newer)"
    )
    return replace(spec, exclude_newer=when)


def _with_envkit(spec: EnvSpec, version: str, extras: tuple[str, ...], notes: list[str]) -> EnvSpec:
    """``spec`` with ``envkit==<running version>`` (the runner needs it; with ``extras``);
    a recorded envkit version other than the running one is refused."""
    from packaging.requirements import Requirement

    from envkit.sandbox.spec import apply_overrides, canonical_requirement

    if extras:
        wanted = f"envkit[{','.join(extras)}]=={version}"
        return replace(spec, requirements=apply_overrides(spec.requirements, [wanted]).requirements)
    existing = spec.requirement_map().get("envkit")
    if existing is None:
        added = canonical_requirement(f"envkit=={version}")
        notes.append(f"added {added} (it runs the model inside the environment)")
        return replace(spec, requirements=tuple(sorted((*spec.requirements, added))))
    req = Requirement(existing)
    if req.url is None and not req.specifier.contains(version, prereleases=True):
        raise EnvironmentBuildError(
            f"the model requires {existing}, but envkit is not on any package index and the "
            f"running envkit is {version}; run the envkit the model needs, or validate with "
            f"--override 'envkit=={version}'"
        )
    return spec


# --- provisioning --------------------------------------------------------------------------------


def provision(
    model_uri: str | os.PathLike[str],
    options: ProvisionOptions | None = None,
    *,
    model: Model | None = None,
) -> ProvisionedEnvironment:
    """A ready environment for the model at ``model_uri`` (a directory, ``file://`` or
    ``runs:/`` URI): :func:`prepare`, then :meth:`ProvisionedEnvironment.build`. ``model`` is
    its already checked :class:`Model` (otherwise it is read and checked here).

    Raises :class:`~envkit.errors.EnvkitError`: :class:`~envkit.errors.UsageError` for
    options the backend does not take, :class:`~envkit.errors.BackendUnavailableError`,
    :class:`~envkit.errors.EnvironmentBuildError` or
    :class:`~envkit.errors.SubprocessError` when the environment cannot be built.
    """
    ready = prepare(model_uri, options, model=model)
    ready.build()
    return ready


def prepare(
    model_uri: str | os.PathLike[str],
    options: ProvisionOptions | None = None,
    *,
    model: Model | None = None,
) -> ProvisionedEnvironment:
    """Everything but the build: the backend, the plan, the Python (so that a caller can say
    what is about to be built before it is)."""
    from envkit.models.uri import resolve_model_uri
    from envkit.sandbox.backends import choose_backend
    from envkit.sandbox.cache import EnvCache
    from envkit.sandbox.checks import check_model

    options = options or ProvisionOptions()
    model_dir = resolve_model_uri(model_uri)
    if model is None:
        model = check_model(model_dir, need_input_example=False, trust=options.trust)
    started = time.perf_counter()
    backend, note = choose_backend(options.env_manager)
    _configure(backend, options.backend_options)
    if backend.name != "docker":  # (an image brings its own JVM, or none)
        from envkit.sandbox.java import check_java

        check_java(model)  # a spark model on a host without its Java: before any build
    if note:
        logger.info("%s", note)
    cache = EnvCache(options.cache_dir)
    plan = plan_environment(
        model_dir,
        model,
        env_manager=backend.name,
        overrides=options.overrides,
        envkit_extras=options.envkit_extras,
        cache_root=cache.root,
        with_envkit_wheel=backend.cacheable,
    )
    options.progress("spec", f"read {plan.source}: {len(plan.spec.requirements)} requirements")
    warnings = []
    if not backend.isolated:
        warnings.append(
            f"the {backend.name} backend runs in this interpreter: nothing is installed or "
            "isolated, so a missing requirement is not caught"
        )
    python = backend.choose_python(plan.recorded_python, options.python)
    if python.warning:
        warnings.append(python.warning)
        logger.info("%s", python.warning)
    if backend.cacheable:
        plan.spec = plan.spec.resolved(python=python.version)
    options.progress("interpreter", f"Python {python.version}")
    ready = ProvisionedEnvironment(
        backend, backend.open(Path(sys.prefix)), plan, python, CacheUse(False, False, ""), note
    )
    ready.warnings = warnings
    ready.timings = {"resolve": time.perf_counter() - started}
    ready._builder = _Builder(ready, cache, options)
    return ready


def _configure(backend: SandboxBackend, backend_options: Mapping[str, object]) -> None:
    """Hand the backend its options (``--base-image``...); refuse options it does not take."""
    unknown = [name for name in backend_options if name not in backend.options]
    if unknown:
        flags = ", ".join("--" + name.replace("_", "-") for name in unknown)
        raise UsageError(
            f"{flags} cannot be used with the {backend.name} environment manager (it is for "
            "--env-manager docker)"
        )
    if backend_options or backend.options:  # (a backend with options checks its settings)
        backend.configure(**backend_options)


@dataclass
class _Builder:
    """Builds a provisioned environment's plan into the cache (or a scratch directory)."""

    ready: ProvisionedEnvironment
    cache: EnvCache
    options: ProvisionOptions

    def build(self, directory: Path) -> BuildInfo:
        ready, options = self.ready, self.options
        options.progress("build", f"building the environment with {ready.backend.name}")
        info = ready.backend.create(
            ready.spec,
            directory,
            python=ready.python,
            plan=ready.plan.install,
            timeout=options.build_timeout,
        )
        if ready.compiles_bytecode and self.options.use_cache:
            from envkit.sandbox.bytecode import seed, store_root

            seeded = seed(ready.backend.open(directory).python, store_root(self.cache.root))
            info.timings["bytecode"] = round(seeded.seconds, 3)
        from envkit.sandbox.manifest import record_manifest

        record_manifest(directory)  # what a cache hit checks the environment against
        return info

    def obtain(self) -> None:
        """Build (``--no-cache``) or take from the cache; fills in the environment."""
        ready = self.ready
        started = time.perf_counter()
        if not self.options.use_cache:
            from envkit.sandbox.tempdirs import make_tempdir

            ready.scratch = make_tempdir("env")
            info = self.build(ready.scratch)
            ready.cache = CacheUse(False, False, "--no-cache", key=ready.spec.key)
            ready.tools = dict(info.tools)
            ready.timings["install"] = time.perf_counter() - started
            self._built_python(info.python)
            ready.environment = ready.backend.open(ready.scratch)
            self.options.progress(
                "environment", f"built in {ready.timings['install']:.1f}s (--no-cache)"
            )
            return
        self.options.progress("cache", "checking the environment cache")
        backend = ready.backend
        result = self.cache.get_or_build(
            ready.spec, self.build, check=lambda record: backend.check(backend.open(record.path))
        )
        self._from_cache(result.record, result.hit, result.reason, result.waited, started)

    def _from_cache(
        self, record: CacheRecord, hit: bool, reason: str, waited: float, started: float
    ) -> None:
        ready = self.ready
        ready.cache = CacheUse(
            True,
            hit,
            reason,
            key=ready.spec.key,
            path=str(record.path),
            root=str(self.cache.root),
            waited=waited,
        )
        ready.tools = dict(record.tools)
        from envkit.sandbox.bytecode import store_root

        ready.bytecode_store = store_root(self.cache.root)
        self._built_python(record.python)
        ready.timings["install"] = 0.0 if hit else time.perf_counter() - started
        if not hit:
            ready.timings["build_create"] = record.timings.get("create", 0.0)
            ready.timings["build_install"] = record.timings.get("install", 0.0)
            ready.timings["build_bytecode"] = record.timings.get("bytecode", 0.0)
        built = "cache hit" if hit else f"built in {ready.timings['install']:.1f}s"
        self.options.progress("environment", f"environment {ready.spec.key}: {built} ({reason})")
        logger.info(
            "environment %s: %s (%s)", ready.spec.key, "cache hit" if hit else "built", reason
        )
        ready.environment = ready.backend.open(record.path)

    def _built_python(self, version: str) -> None:
        """A backend that brings its own Python (docker: the base image's) says which it is."""
        if self.ready.python.interpreter is None and version:
            ran_with(self.ready.python, version)


def ran_with(python: PythonChoice, version: str) -> None:
    """The Python that runs the model is ``version``: the choice says so."""
    python.version = version
    python.exact = not python.recorded or same_version(python.recorded, version)


def same_version(recorded: str, running: str) -> bool:
    """Whether ``running`` (3.11.7) is the recorded version (``3.11.7`` or just ``3.11``)."""
    return running.split(".")[: len(recorded.split("."))] == recorded.split(".")


def _check_python_option(python: str | None) -> str | None:
    if python is None:
        return None
    text = str(python).strip()
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", text):
        raise UsageError(
            f"--python {python!r} is not a Python version; give one like 3.11 or 3.11.7"
        )
    return text
