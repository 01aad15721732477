"""Rebuild a model's environment and run the model there: :func:`validate` and :func:`predict`.

``validate`` returns a :class:`ValidationReport` (data; the CLI renders it) for models that
load and predict, fail, or whose environment cannot be built. Bad input (an unreadable model,
a path escaping it, a malformed ``--input``, bad options) is checked on the host first and
raises before anything is built. ``predict`` runs the same pipeline and returns the
predictions, raising on any failure. Both take the same options, under envkit's names and
MLflow's (``overrides``/``pip_requirements_override``, ``extra_env``/``extra_envs``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit._subprocess import check_timeout
from envkit.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENV_FAILED,
    EXIT_MODEL_FAILED,
    EXIT_OK,
    EnvironmentBuildError,
    EnvkitError,
    ModelFailedError,
    ModelFormatError,
    ModelTimeoutError,
    SchemaEnforcementError,
    ServingInputError,
    SubprocessError,
    UsageError,
    tail,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TIMEOUT", "ValidationReport", "predict", "validate"]

DEFAULT_TIMEOUT = 300.0
DEFAULT_BUILD_TIMEOUT = 1800.0
# The oldest Python the runner (envkit itself) runs on.
MIN_RUNNER_PYTHON = (3, 9)
# The runner's stages, as a report names them.
_STAGE_WORDS = {
    "load": "loading the model",
    "input": "reading the input",
    "predict": "predict",
    "stream": "predict_stream",
    "output": "writing the predictions",
}
# Terminal colour and cursor sequences (CSI, OSC and two-byte escapes): never copied into a
# report.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
ProgressCallback = Callable[[str, str], None]


@dataclass
class ValidationReport:
    """What ``envkit validate`` found: where the model ran, how long each step took, its output.

    ``status`` is ``ok``, ``model_failed`` (load/predict error, timeout, schema),
    ``bad_input`` (the model or the input turned out unreadable inside the environment: an
    error envkit raises with exit code 2 in-process, such as a loader module that cannot be
    imported) or ``env_failed`` (the environment could not be built); ``exit_code`` is the
    CLI's.
    """

    model: str
    status: str = "ok"
    exit_code: int = EXIT_OK
    backend: str = ""
    backend_note: str | None = None
    isolated: bool = True
    interpreter: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    spec_notes: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    loader: str | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    stream: dict[str, Any] | None = None
    mismatches: list[dict[str, str]] = field(default_factory=list)
    # Distributions the environment holds beyond the model's requirements and envkit's runtime
    # (None where the environment is not envkit's to build: local).
    unrequested: list[str] | None = None
    warnings: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    model_log: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def headline(self) -> str:
        """One line: what happened and, on failure, what to try."""
        if self.ok:
            where = f"{self.backend}, Python {self.interpreter.get('version', '?')}"
            did = "loaded and predicted" if self.output is not None else "loaded"
            if self.input and self.input.get("source") is None:
                did = "loaded (no input example to predict on; pass --input FILE)"
            return f"OK: the model {did} in a rebuilt environment ({where})"
        message = (self.error or {}).get("message", "failed")
        return f"FAILED: {message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ok": self.ok,
            "status": self.status,
            "exit_code": self.exit_code,
            "headline": self.headline,
            "backend": self.backend,
            "backend_note": self.backend_note,
            "isolated": self.isolated,
            "interpreter": dict(self.interpreter),
            "spec": dict(self.spec),
            "spec_notes": list(self.spec_notes),
            "cache": dict(self.cache),
            "tools": dict(self.tools),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "loader": self.loader,
            "input": self.input,
            "output": self.output,
            "stream": self.stream,
            "mismatches": list(self.mismatches),
            "unrequested": self.unrequested,
            "warnings": list(self.warnings),
            "error": self.error,
        }

    def to_error(self) -> EnvkitError | None:
        """The exception that stands for this report's failure (None when it passed): the
        class the sandbox raised, when it was an envkit error with this exit code."""
        if self.ok or self.error is None:
            return None
        message = str(self.error.get("message", "validation failed"))
        detail = self.error.get("detail")
        kind = self.error.get("kind")
        cls: type[EnvkitError]
        if self.status == "env_failed":
            cls = EnvironmentBuildError
        elif self.status == "bad_input":
            cls = ModelFormatError
        elif kind == "timeout":
            cls = ModelTimeoutError
        elif kind == "schema":
            cls = SchemaEnforcementError
        else:
            cls = ModelFailedError
        carried = _error_class(self.error.get("class"), self.exit_code)
        if carried is not None:
            try:
                return carried(message, detail=detail)
            except TypeError:  # a class that needs more than a message (SubprocessError)
                pass
        error = cls(message, detail=detail)
        error.exit_code = self.exit_code or error.exit_code
        return error

    def raise_for_error(self) -> None:
        """Raise the report's failure as an :class:`~envkit.errors.EnvkitError`."""
        error = self.to_error()
        if error is not None:
            raise error


# --- the pipeline --------------------------------------------------------------------------------


class _Session:
    """One validation: the steps share the report they fill in.

    Creating it checks the model on the host (MLmodel, paths inside the model, signature)
    and the options, so that bad input fails before anything is built.
    """

    def __init__(
        self,
        model_uri: str | os.PathLike[str],
        *,
        env_manager: str | None,
        python: str | None,
        overrides: Sequence[str],
        timeout: float | None,
        build_timeout: float | None,
        use_cache: bool,
        cache_dir: str | os.PathLike[str] | None,
        extra_env: Mapping[str, str] | None,
        progress: ProgressCallback | None,
        backend_options: Mapping[str, Any] | None = None,
        need_input_example: bool = True,
    ) -> None:
        from envkit.models.uri import resolve_model_uri

        self.start = time.perf_counter()
        self.python = _check_python_option(python)
        self.timeout = check_timeout(timeout, "--timeout")
        self.build_timeout = check_timeout(build_timeout, "build_timeout")
        self.model_dir = resolve_model_uri(model_uri)
        self.model = check_model(self.model_dir, need_input_example=need_input_example)
        self.env_manager = env_manager or "uv"
        self.overrides = list(overrides or ())
        self.use_cache = use_cache
        self.cache_dir = cache_dir
        self.extra_env = dict(extra_env or {})
        self.backend_options = {k: v for k, v in (backend_options or {}).items() if v is not None}
        self.progress = progress or (lambda _event, _message: None)
        self.report = ValidationReport(model=str(self.model_dir))
        # Created just before the model runs, so that a build killed halfway leaves no
        # temporary directory behind.
        self.workdir: Path | None = None
        self.scratch_env: Path | None = None
        self.predictions: dict[str, Any] | None = None
        self.requirements: list[str] = []
        self.build_dependencies: list[str] = []

    def close(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.scratch_env is not None:
            shutil.rmtree(self.scratch_env, ignore_errors=True)

    # -- environment -----------------------------------------------------------------------------

    def _configure(self, backend: Any) -> None:
        """Hand the backend its options (``--base-image``...); refuse options it does not take."""
        accepted = tuple(getattr(backend, "options", ()) or ())
        unknown = [name for name in self.backend_options if name not in accepted]
        if unknown:
            flags = ", ".join("--" + name.replace("_", "-") for name in unknown)
            raise UsageError(
                f"{flags} cannot be used with the {backend.name} environment manager (it is for "
                "--env-manager docker)"
            )
        if self.backend_options or accepted:  # (a backend with options checks its settings)
            backend.configure(**self.backend_options)

    def prepare(self) -> Any:
        """Choose the backend, read the spec, find the interpreter, get the environment."""
        from envkit.sandbox.backends import choose_backend
        from envkit.sandbox.backends.base import install_plan
        from envkit.sandbox.cache import EnvCache
        from envkit.sandbox.spec import apply_overrides, read_env_spec

        report = self.report
        started = time.perf_counter()
        backend, note = choose_backend(self.env_manager)
        self._configure(backend)
        report.backend = backend.name
        report.backend_note = note
        report.isolated = bool(getattr(backend, "isolated", True))
        if note:
            logger.info("%s", note)
        if not report.isolated:
            report.warnings.append(
                f"the {backend.name} backend runs in this interpreter: nothing is installed or "
                "isolated, so a missing requirement is not caught"
            )

        conf = self.model.flavors["python_function"]
        spec = read_env_spec(
            self.model_dir,
            env_manager=backend.name,
            flavor_env=conf.get("env") if isinstance(conf.get("env"), dict) else None,
            python_version_hint=conf.get("python_version"),
        )
        source = spec.source
        recorded_python = spec.python
        if self.overrides:
            overridden = apply_overrides(spec.requirements, self.overrides)
            spec = _replace(spec, requirements=overridden.requirements)
            report.spec_notes.extend(f"--override: {n}" for n in overridden.notes)
        self.progress("spec", f"read {source}: {len(spec.requirements)} requirements")

        interpreter = None
        if backend.needs_interpreter:
            from envkit.sandbox.interpreters import find_interpreter

            match = find_interpreter(self.python or spec.python)
            interpreter = match.interpreter
            _check_runner_python(interpreter.version, self.python, recorded_python)
            if match.warning:
                report.warnings.append(match.warning)
                logger.info("%s", match.warning)
            spec = spec.resolved(python=interpreter.version)
            report.interpreter = {
                "path": str(interpreter.path),
                "version": interpreter.version,
                "found_by": interpreter.source,
                "recorded": recorded_python,
                "requested": self.python or recorded_python,
                "exact": match.exact,
            }
        elif backend.cacheable:  # the backend provides Python itself (conda, docker)
            spec = spec.resolved(python=self.python or spec.python)
            _check_runner_python(spec.python, self.python, recorded_python)
            report.interpreter = {
                "version": spec.python,
                "recorded": recorded_python,
                "requested": self.python or recorded_python,
                "found_by": backend.name,
                "exact": None,  # known once the environment says which Python it has
            }
        else:  # local
            report.interpreter = {
                "path": sys.executable,
                "version": platform.python_version(),
                "recorded": recorded_python,
                "requested": self.python or recorded_python,
                "found_by": "current",
                "exact": platform.python_version() == recorded_python,
            }
            if self.python and not _same_version(self.python, platform.python_version()):
                raise UsageError(
                    f"--python {self.python} cannot be used with the local backend, which runs "
                    f"this interpreter (Python {platform.python_version()})"
                )
        self.progress("interpreter", f"Python {report.interpreter.get('version')}")

        cache = EnvCache(self.cache_dir)
        wheel = None
        if backend.cacheable:
            from envkit.sandbox.selfwheel import build_self_wheel

            wheel = build_self_wheel(cache.root)
            spec = _ensure_envkit(spec, wheel.version, report.spec_notes)
            spec = spec.resolved(runner=wheel.runner_id)
        report.spec = {**spec.to_dict(), "key": spec.key, "source": source}
        self.requirements = list(spec.requirements)
        self.build_dependencies = list(spec.build_dependencies)
        plan = install_plan(spec, wheel)
        if plan.require_hashes:
            report.spec_notes.append(f"requirements.lock: {len(plan.pins)} pins, hashes checked")
        elif spec.hashes and backend.cacheable:
            report.spec_notes.append(
                "requirements.lock: hashes not checked (an --override replaced a locked pin)"
            )
        report.timings["resolve"] = time.perf_counter() - started

        if not backend.cacheable:
            report.cache = {"used": False, "hit": False, "reason": f"{backend.name}: no cache"}
            report.timings["install"] = 0.0
            return backend, backend.open(Path(sys.prefix))

        def build(directory: Path) -> Any:
            self.progress("build", f"building the environment with {backend.name}")
            info = backend.create(
                spec, directory, interpreter=interpreter, plan=plan, timeout=self.build_timeout
            )
            if interpreter is not None and self.use_cache:
                from envkit.sandbox.bytecode import seed_bytecode

                started = time.perf_counter()
                donors = [
                    r.path
                    for r in cache.records()
                    if r.python == interpreter.version and r.path != directory
                ][:3]
                info.extra["seeded_bytecode"] = seed_bytecode(directory, donors)
                info.timings["seed_bytecode"] = time.perf_counter() - started
            return info

        started = time.perf_counter()
        if not self.use_cache:
            from envkit.sandbox.tempdirs import make_tempdir

            self.scratch_env = make_tempdir("env")
            info = build(self.scratch_env)
            report.cache = {"used": False, "hit": False, "reason": "--no-cache", "key": spec.key}
            report.tools = dict(info.tools)
            report.timings["install"] = time.perf_counter() - started
            self._built_python(backend, info.python)
            self.progress("environment", f"built in {report.timings['install']:.1f}s (--no-cache)")
            return backend, backend.open(self.scratch_env)

        miss_note = "checking the environment cache"
        self.progress("cache", miss_note)
        result = cache.get_or_build(
            spec, build, check=lambda record: backend.check(backend.open(record.path))
        )
        record = result.record
        report.cache = {
            "used": True,
            "hit": result.hit,
            "reason": result.reason,
            "key": spec.key,
            "path": str(record.path),
            "root": str(cache.root),
            "waited": round(result.waited, 3),
        }
        if not result.hit and "seeded_bytecode" in record.extra:
            report.cache["seeded_bytecode"] = record.extra["seeded_bytecode"]
        report.tools = dict(record.tools)
        self._built_python(backend, record.python)
        report.timings["install"] = 0.0 if result.hit else time.perf_counter() - started
        self.progress(
            "environment",
            f"environment {spec.key}: "
            + ("cache hit" if result.hit else f"built in {report.timings['install']:.1f}s")
            + f" ({result.reason})",
        )
        if not result.hit:
            report.timings["build_create"] = record.timings.get("create", 0.0)
            report.timings["build_install"] = record.timings.get("install", 0.0)
        logger.info(
            "environment %s: %s (%s)",
            spec.key,
            "cache hit" if result.hit else "built",
            result.reason,
        )
        return backend, backend.open(record.path)

    def _built_python(self, backend: Any, version: str) -> None:
        """A backend that brings its own Python (docker: the base image's) says which it is."""
        if not backend.needs_interpreter and version:
            self._set_python(version)

    def _set_python(self, version: str) -> None:
        """The Python that runs the model is ``version``: the report says so everywhere."""
        interp = self.report.interpreter
        interp["version"] = version
        recorded = str(interp.get("recorded") or "")
        interp["exact"] = not recorded or _same_version(recorded, version)

    # -- running ---------------------------------------------------------------------------------

    def run_model(
        self,
        backend: Any,
        env: Any,
        *,
        input_path: Path | None,
        content_type: str | None,
        want_predictions: bool = False,
        stream: bool = True,
    ) -> None:
        from envkit.sandbox.spec import requirement_name
        from envkit.sandbox.tempdirs import make_tempdir

        report = self.report
        workdir = self.workdir = make_tempdir("run")
        result_path = workdir / "result.json"
        status_path = workdir / "status.json"
        predictions_path = workdir / "predictions.json" if want_predictions else None
        request = {
            "model_dir": str(self.model_dir),
            "input_path": str(input_path) if input_path else None,
            "content_type": content_type,
            "result_path": str(result_path),
            "status_path": str(status_path),
            "predictions_path": str(predictions_path) if predictions_path else None,
            "stream": stream,
            "requirements": [r for r in self.requirements if requirement_name(r) != "envkit"],
            "build_dependencies": list(self.build_dependencies),
            "check_unrequested": bool(report.isolated),
        }
        request_path = workdir / "request.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        self.progress("run", "loading the model and predicting")
        # What the runner reads and writes: a containerizing backend mounts exactly these.
        outcome = backend.run(
            env,
            ["python", "-m", "envkit.sandbox.runner", str(request_path)],
            cwd=workdir,
            timeout=self.timeout,
            extra_env=self.extra_env,
            paths=[self.model_dir] + ([input_path] if input_path else []),
            writable_paths=[workdir],
        )
        report.timings["run"] = outcome.duration
        report.model_log = strip_ansi((outcome.stdout + outcome.stderr).strip())
        data = _read_json(result_path) or {}
        if outcome.timed_out:
            status = _read_json(status_path) or {}
            data = {**status, **data}
        if predictions_path is not None:
            self.predictions = _read_json(predictions_path)
        for name in ("load", "input", "predict", "stream"):
            if name in (data.get("timings") or {}):
                report.timings[name] = float(data["timings"][name])
        report.loader = data.get("loader")
        report.input = data.get("input")
        report.output = data.get("output")
        if report.output and isinstance(report.output.get("preview"), str):
            report.output["preview"] = strip_ansi(report.output["preview"])
        report.stream = data.get("stream")
        report.mismatches = list(data.get("mismatches") or [])
        if "unrequested" in data:
            report.unrequested = [str(name) for name in data["unrequested"]]
        report.warnings.extend(strip_ansi(str(w)) for w in data.get("warnings") or [])
        if data.get("python"):
            running = str(data["python"])
            self._set_python(running)
            report.interpreter["running"] = running
            recorded = str(report.interpreter.get("recorded") or "")
            if recorded and not _same_version(recorded, running):
                report.mismatches.insert(
                    0,
                    {
                        "requirement": f"python=={recorded}",
                        "installed": running,
                        "problem": f"Python {running} runs the model",
                    },
                )

        if outcome.timed_out:
            stage = data.get("stage", "start")
            what = _STAGE_WORDS.get(stage, "the model")
            self._fail(
                "timeout",
                f"the model timed out after {self.timeout:.0f}s during {what}; raise --timeout "
                "if it is just slow, or check the model for a hang",
                detail=_log_tail(report.model_log),
                stage=stage,
            )
        elif not data:
            killed = _killed_hint(backend, outcome.returncode, outcome.extra)
            if killed is not None:
                text = f"{killed} (run with --verbose for its output)"
            else:
                text = (
                    f"the model process exited with code {outcome.returncode} before "
                    f"reporting; {strip_ansi(_last_line(outcome.stderr)) or 'no output'} (run "
                    "with --verbose for its output)"
                )
            self._fail("crash", text, detail=_log_tail(report.model_log), stage="start")
        elif not data.get("ok"):
            self._failed_in_sandbox(data.get("error") or {})

    def _failed_in_sandbox(self, error: Mapping[str, Any]) -> None:
        """Report what the runner caught, with the exit code it has in-process."""
        stage = str(error.get("stage", "?"))
        kind = str(error.get("kind", stage))
        message = strip_ansi(str(error.get("message", "unknown error")))
        etype = str(error.get("type", "Exception")).rsplit(".", 1)[-1]
        what = _STAGE_WORDS.get(stage, "the model")
        if kind == "import" and self.report.isolated:
            text = (
                f"{what} failed: {etype}: {message}; the environment holds only the model's "
                "recorded requirements: add the missing package to them (or try "
                "--override PACKAGE)"
            )
        elif kind == "import":
            text = (
                f"{what} failed: {etype}: {message}; the {self.report.backend} backend uses this "
                "interpreter's packages: install the missing package here, or validate in a "
                "rebuilt environment (--env-manager uv)"
            )
        elif kind == "schema":
            text = (
                f"the input does not match the model signature: {message}; fix the input "
                "example or the signature"
            )
        elif stage == "load":
            text = f"loading the model failed: {etype}: {message}"
        elif stage == "input":
            text = f"reading the input failed: {etype}: {message}"
        elif stage == "stream":
            text = f"predict_stream raised {etype}: {message}"
        elif stage == "output":
            text = f"the predictions cannot be written as JSON: {message}"
        else:
            text = f"predict raised {etype}: {message}"
        exit_code = error.get("exit_code")
        self._fail(
            kind,
            text,
            detail=strip_ansi(str(error["traceback"])) if error.get("traceback") else None,
            stage=stage,
            exit_code=exit_code if exit_code == EXIT_BAD_INPUT else EXIT_MODEL_FAILED,
            error_class=str(error["class"]) if error.get("class") else None,
        )

    def _fail(
        self,
        kind: str,
        message: str,
        *,
        detail: str | None,
        stage: str,
        exit_code: int = EXIT_MODEL_FAILED,
        error_class: str | None = None,
    ) -> None:
        report = self.report
        names = [str(n) for n in (self.model.env_vars or [])]
        unset = [n for n in names if n not in os.environ and n not in self.extra_env]
        if unset:  # names only: values are never shown
            report.warnings.append(
                "the model records environment variables it reads that are not set here: "
                + ", ".join(unset)
            )
        report.status = "bad_input" if exit_code == EXIT_BAD_INPUT else "model_failed"
        report.exit_code = exit_code
        report.error = {"kind": kind, "stage": stage, "message": message, "detail": detail}
        if error_class:
            report.error["class"] = error_class

    def run(self, **options: Any) -> None:
        """Build (or reuse) the environment and run the model there (``options`` are
        :meth:`run_model`'s), then clean up; an environment that cannot be built is reported,
        not raised."""
        try:
            try:
                backend, env = self.prepare()
            except (EnvironmentBuildError, SubprocessError) as exc:
                self.env_failed(exc)
            else:
                self.run_model(backend, env, **options)
        finally:
            self.close()

    def env_failed(self, exc: EnvkitError) -> None:
        report = self.report
        report.status = "env_failed"
        report.exit_code = EXIT_ENV_FAILED
        message = strip_ansi(exc.message)
        if isinstance(exc, SubprocessError) and "build dependencies" in message:
            message = message.rstrip(".") + (
                "; the build dependencies python_env.yaml records cannot be installed for this "
                "Python (try another --python)"
            )
        elif (
            isinstance(exc, SubprocessError)
            and "hashes checked" in message
            and "hash" in message.split("failed:", 1)[-1].lower()
        ):
            what, _, why = message.partition(" failed: ")
            why = why if len(why) <= 120 else why[:117] + "..."
            message = (
                f"{what} failed: a downloaded file does not match its hash in requirements.lock "
                "(if the package was re-published legitimately, lock again: envkit lock MODEL; "
                f"otherwise find out why before deploying): {why}"
            )
        elif isinstance(exc, SubprocessError) and message.startswith("installing"):
            message = message.rstrip(".") + (
                "; check the requirement names and versions, or try --override REQ"
            )
        kind = type(exc).__name__
        report.error = {
            "kind": kind,
            "stage": "environment",
            "message": message,
            "detail": strip_ansi(exc.detail) if exc.detail else None,
        }
        reasons = getattr(exc, "reasons", None)
        if reasons:
            report.error["reasons"] = dict(reasons)


# --- checks on the host, before anything is built ----------------------------------------------


def check_model(model_dir: Path, *, need_input_example: bool = True) -> Any:
    """The model's :class:`~envkit.models.model.Model`, after checking on the host what the
    sandbox would otherwise find out only after building: no symlink leads outside the
    model, the MLmodel file reads, the model has a python_function flavor with a loader,
    every path a flavor records stays inside the model (and the pyfunc flavor's exist), the
    signature parses, the input example is there. Raises the error (exit code 2) the model
    would raise in-process."""
    from envkit._fs import check_tree_inside
    from envkit.models.model import MLMODEL_FILE_NAME, Model, check_recorded_paths

    check_tree_inside(model_dir)
    model = Model._read(model_dir / MLMODEL_FILE_NAME)
    if "python_function" not in model.flavors:
        have = ", ".join(sorted(model.flavors)) or "none"
        raise ModelFormatError(
            f"the model has no python_function flavor (its flavors: {have}); envkit "
            "validates models it can load as a pyfunc"
        )
    pyfunc = model.get_flavor("python_function")
    if not pyfunc.get("loader_module"):
        raise ModelFormatError("python_function flavor has no loader_module")

    check_recorded_paths(model_dir, model, need_input_example=need_input_example)
    model.signature  # noqa: B018 - parsing it raises ModelFormatError for a broken one
    return model


def check_input(path: Path, content_type: str, model: Any) -> None:
    """Parse ``--input`` on the host as the runner will: a malformed payload is a
    :class:`~envkit.errors.ServingInputError` (exit 2) now, not after a build. Values that do
    not fit the signature are left to the model's own environment to report."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ServingInputError(f"--input {path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise UsageError(f"--input {path}: {exc.strerror or exc}") from None
    signature = model.signature
    try:
        from envkit.models.serving_input import parse_serving_input

        parse_serving_input(
            text,
            content_type="text/csv" if content_type == "csv" else "application/json",
            schema=signature.inputs if signature is not None else None,
            params_schema=getattr(signature, "params", None) if signature is not None else None,
            signature_from_type_hint=bool(model.is_signature_from_type_hint),
        )
    except ServingInputError as exc:
        raise ServingInputError(f"--input {path}: {exc.message}") from None
    except SchemaEnforcementError:
        return  # the model's environment reports it, with the model's own conversions
    except ImportError:  # no pandas/numpy here: at least the JSON must parse
        if content_type != "csv":
            try:
                json.loads(text)
            except (ValueError, RecursionError) as exc:
                why = exc if isinstance(exc, ValueError) else "nested too deeply"
                raise ServingInputError(f"--input {path}: not valid JSON ({why})") from None
    except Exception as exc:  # left to the environment, where the model's packages are
        logger.debug("checking --input on the host: %s: %s", type(exc).__name__, exc)


def _check_python_option(python: str | None) -> str | None:
    if python is None:
        return None
    text = str(python).strip()
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", text):
        raise UsageError(
            f"--python {python!r} is not a Python version; give one like 3.11 or 3.11.7"
        )
    return text


def _check_runner_python(version: str, requested: str | None, recorded: str) -> None:
    """The model runs under envkit's runner, which needs Python 3.9 or newer."""
    try:
        parts = tuple(int(p) for p in str(version).split(".")[:2])
    except ValueError:
        return
    if parts >= MIN_RUNNER_PYTHON:
        return
    minimum = ".".join(map(str, MIN_RUNNER_PYTHON))
    origin = f"--python {requested}" if requested else f"the model records Python {recorded}"
    raise EnvironmentBuildError(
        f"Python {version} cannot run envkit, which loads the model inside the environment "
        f"(it needs Python {minimum} or newer; {origin}); validate with --python {minimum} or "
        "newer"
    )


def _killed_hint(backend: Any, returncode: int | None, extra: Mapping[str, Any]) -> str | None:
    """The backend's word on a run that ended before reporting (the base class's for a
    third-party backend that does not subclass it)."""
    from envkit.sandbox.backends.base import Backend

    method = getattr(backend, "killed_hint", None)
    if method is None:
        return Backend.killed_hint(backend, returncode, extra)
    result: str | None = method(returncode, extra)
    return result


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour and cursor sequences."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def _error_class(name: Any, exit_code: int) -> type[EnvkitError] | None:
    """The envkit error class called ``name``, when its exit code is ``exit_code``."""
    import envkit.errors

    cls = getattr(envkit.errors, str(name), None) if name else None
    if isinstance(cls, type) and issubclass(cls, EnvkitError) and cls.exit_code == exit_code:
        return cls
    return None


def _replace(spec: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(spec, **changes)


def _ensure_envkit(spec: Any, version: str, notes: list[str]) -> Any:
    """Add ``envkit==<running version>`` when the model does not list envkit (the runner
    needs it); refuse a recorded envkit version other than the running one."""
    from packaging.requirements import Requirement

    from envkit.sandbox.spec import canonical_requirement

    existing = spec.requirement_map().get("envkit")
    if existing is None:
        added = canonical_requirement(f"envkit=={version}")
        notes.append(f"added {added} (it runs the model inside the environment)")
        return _replace(spec, requirements=tuple(sorted((*spec.requirements, added))))
    req = Requirement(existing)
    if req.url is None and not req.specifier.contains(version, prereleases=True):
        raise EnvironmentBuildError(
            f"the model requires {existing}, but envkit is not on any package index and the "
            f"running envkit is {version}; run the envkit the model needs, or validate with "
            f"--override 'envkit=={version}'"
        )
    return spec


def _same_version(recorded: str, running: str) -> bool:
    """Whether ``running`` (3.11.7) is the recorded version (``3.11.7`` or just ``3.11``)."""
    return running.split(".")[: len(recorded.split("."))] == recorded.split(".")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _last_line(text: str) -> str:
    from envkit._subprocess import last_error_line

    return last_error_line(text)


def _log_tail(text: str) -> str | None:
    return ("model output (tail):\n" + tail(text)) if text.strip() else None


def _input_type(input_path: str | os.PathLike[str] | None, content_type: str | None) -> str | None:
    if content_type:
        lowered = content_type.lower()
        if lowered in ("json", "application/json"):
            return "json"
        if lowered in ("csv", "text/csv"):
            return "csv"
        raise UsageError(f"unknown content type {content_type!r}; use json or csv")
    if input_path is None:
        return None
    return "csv" if str(input_path).lower().endswith(".csv") else "json"


def _check_input_file(input_path: str | os.PathLike[str] | None) -> Path | None:
    if input_path is None:
        return None
    path = Path(input_path).expanduser().absolute()
    if not path.is_file():
        raise UsageError(f"--input {input_path}: no such file")
    return path


def _one_of(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """``value`` or ``alias_value`` (one option under envkit's name and MLflow's)."""
    if value and alias_value:
        raise UsageError(f"give {name} or {alias}, not both (they are the same option)")
    return value or alias_value


def _run(
    model_uri: str | os.PathLike[str],
    *,
    input_data: Any,
    input_path: str | os.PathLike[str] | None,
    content_type: str | None,
    output_path: str | os.PathLike[str] | None,
    want_predictions: bool,
    stream: bool,
    session_options: dict[str, Any],
) -> _Session:
    """Check everything on the host, then build (or reuse) the environment and run the model
    there: the session, whose report says how it went."""
    from envkit.sandbox.tempdirs import make_tempdir

    if input_data is not None and input_path is not None:
        raise UsageError("give input_data or input_path, not both")
    kind = _input_type(input_path, content_type)
    path = _check_input_file(input_path)
    session = _Session(
        model_uri,
        need_input_example=input_path is None and input_data is None,
        **session_options,
    )
    tmp = None
    try:
        if input_data is not None:
            kind = kind or "json"
            tmp = make_tempdir("input")
            path = tmp / ("input.csv" if kind == "csv" else "input.json")
            _write_input_data(input_data, path, kind)
        if path is not None:
            check_input(path, kind or "json", session.model)
        session.run(
            input_path=path,
            content_type=kind,
            want_predictions=want_predictions or output_path is not None,
            stream=stream,
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if output_path is not None and session.report.ok:
        if session.predictions is None:
            raise ModelFailedError("the model produced no predictions (is the input empty?)")
        from envkit._fs import atomic_write_text

        atomic_write_text(
            Path(output_path).expanduser().absolute(), json.dumps(session.predictions)
        )
    return session


def validate(
    model_uri: str | os.PathLike[str],
    *,
    env_manager: str | None = "uv",
    python: str | None = None,
    input_path: str | os.PathLike[str] | None = None,
    content_type: str | None = None,
    overrides: Sequence[str] = (),
    timeout: float | None = DEFAULT_TIMEOUT,
    build_timeout: float | None = DEFAULT_BUILD_TIMEOUT,
    use_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    stream: bool = True,
    extra_env: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
    input_data: Any = None,
    output_path: str | os.PathLike[str] | None = None,
    pip_requirements_override: Sequence[str] | None = None,
    extra_envs: Mapping[str, str] | None = None,
    base_image: str | None = None,
    ca_bundle: str | None = None,
) -> ValidationReport:
    """Rebuild the model's environment and run its input example (or the given input) there.

    Args:
        model_uri: a model directory, ``file://`` URI or ``runs:/<run_id>/<name>``.
        env_manager: ``uv`` (default), ``virtualenv``, ``conda``, ``docker``, ``local``,
            ``auto`` (the first that can run here) or a backend registered under
            ``envkit.backends``.
        python: validate against this Python (``3.12``) instead of the recorded one.
        input_path: a serving payload (JSON: ``dataframe_split``, ``dataframe_records``,
            ``instances`` or ``inputs``, with ``params``) or a CSV file; or ``input_data``: a
            DataFrame, ndarray, list, dict or serving payload dict.
        output_path: also write the predictions there, as ``{"predictions": ...}``.
        overrides: requirements that replace (same name) or add to the recorded ones
            (MLflow's name: ``pip_requirements_override``).
        extra_env: environment variables for the model's process (MLflow's: ``extra_envs``).
        timeout: seconds the model may take to load and predict (``None``: no limit).
        use_cache: reuse / publish environments in the cache (``cache_dir`` or
            ``$ENVKIT_HOME`` or ``~/.cache/envkit``).
        base_image, ca_bundle: for ``env_manager="docker"``, as ``envkit build-docker``'s.

    Returns a :class:`ValidationReport`; a failure of the model or of the environment build is
    in ``report.error`` (``report.raise_for_error()`` raises it). Unreadable models, malformed
    input and bad options raise :class:`~envkit.errors.EnvkitError` (exit code 2) before
    anything is built.
    """
    session = _run(
        model_uri,
        input_data=input_data,
        input_path=input_path,
        content_type=content_type,
        output_path=output_path,
        want_predictions=False,
        stream=stream,
        session_options=_session_options(
            env_manager=env_manager,
            python=python,
            overrides=overrides,
            pip_requirements_override=pip_requirements_override,
            timeout=timeout,
            build_timeout=build_timeout,
            use_cache=use_cache,
            cache_dir=cache_dir,
            extra_env=extra_env,
            extra_envs=extra_envs,
            progress=progress,
            base_image=base_image,
            ca_bundle=ca_bundle,
        ),
    )
    report = session.report
    report.timings["total"] = time.perf_counter() - session.start
    session.progress("done", report.headline)
    return report


def predict(
    model_uri: str | os.PathLike[str],
    input_data: Any = None,
    input_path: str | os.PathLike[str] | None = None,
    content_type: str = "json",
    output_path: str | os.PathLike[str] | None = None,
    env_manager: str | None = "uv",
    *,
    python: str | None = None,
    pip_requirements_override: Sequence[str] | None = None,
    extra_envs: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    use_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    overrides: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    build_timeout: float | None = DEFAULT_BUILD_TIMEOUT,
    base_image: str | None = None,
    ca_bundle: str | None = None,
) -> Any:
    """Predict with the model in its rebuilt environment (like ``mlflow.models.predict``).

    Give the input as ``input_path`` (a serving payload JSON or CSV file) or ``input_data``
    (a DataFrame, ndarray, list, dict or a serving payload dict). Returns the predictions as
    JSON data; with ``output_path`` they are also written there as ``{"predictions": ...}``.
    Takes :func:`validate`'s options too (``overrides`` is ``pip_requirements_override``,
    ``extra_env`` is ``extra_envs``). Raises :class:`~envkit.errors.EnvkitError` when the
    input, the environment or the model fails.
    """
    if (input_data is None) == (input_path is None):
        raise UsageError("give exactly one of input_data and input_path")
    session = _run(
        model_uri,
        input_data=input_data,
        input_path=input_path,
        content_type=content_type,
        output_path=output_path,
        want_predictions=True,
        stream=False,
        session_options=_session_options(
            env_manager=env_manager,
            python=python,
            overrides=overrides,
            pip_requirements_override=pip_requirements_override,
            timeout=timeout,
            build_timeout=build_timeout,
            use_cache=use_cache,
            cache_dir=cache_dir,
            extra_env=extra_env,
            extra_envs=extra_envs,
            progress=progress,
            base_image=base_image,
            ca_bundle=ca_bundle,
        ),
    )
    session.report.raise_for_error()
    if session.predictions is None:
        raise ModelFailedError("the model produced no predictions (is the input empty?)")
    return session.predictions.get("predictions")


def _session_options(
    *,
    base_image: str | None,
    ca_bundle: str | None,
    overrides: Sequence[str] | None,
    pip_requirements_override: Sequence[str] | None,
    extra_env: Mapping[str, str] | None,
    extra_envs: Mapping[str, str] | None,
    **options: Any,
) -> dict[str, Any]:
    """The session's options from :func:`validate`'s / :func:`predict`'s keywords (MLflow's
    aliases ``pip_requirements_override`` and ``extra_envs`` resolved)."""
    overrides = _one_of(
        "overrides", overrides, "pip_requirements_override", pip_requirements_override
    )
    if isinstance(overrides, str):
        raise UsageError("overrides must be a list of requirements, not a string")
    return {
        **options,
        "extra_env": _one_of("extra_env", extra_env, "extra_envs", extra_envs),
        "overrides": list(overrides or ()),
        "backend_options": {"base_image": base_image, "ca_bundle": ca_bundle},
    }


def _write_input_data(data: Any, path: Path, kind: str) -> None:
    """Serialize ``input_data`` as a serving payload (JSON) or CSV."""
    module = type(data).__module__
    if kind == "csv":
        if not hasattr(data, "to_csv"):
            raise UsageError("content_type='csv' needs a pandas DataFrame as input_data")
        data.to_csv(path, index=False)
        return
    if module.startswith("pandas") and hasattr(data, "to_json"):
        if hasattr(data, "columns"):
            payload: Any = {"dataframe_split": json.loads(data.to_json(orient="split"))}
            payload["dataframe_split"].pop("index", None)
        else:
            payload = {"inputs": json.loads(data.to_json(orient="values"))}
    elif module.startswith("numpy") and hasattr(data, "tolist"):
        payload = {"inputs": data.tolist()}
    elif isinstance(data, dict) and set(data) & {
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
    }:
        payload = data
    else:
        payload = {"inputs": data}
    try:
        path.write_text(json.dumps(payload), encoding="utf-8")
    except TypeError as exc:
        raise UsageError(f"input_data cannot be sent as JSON: {exc}") from exc
