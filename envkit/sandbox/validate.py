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
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENV_FAILED,
    EXIT_MODEL_FAILED,
    BackendUnavailableError,
    EnvironmentBuildError,
    EnvkitError,
    ModelFailedError,
    SubprocessError,
    UsageError,
    tail,
)
from envkit.sandbox.contain import ContainmentPolicy
from envkit.sandbox.options import DEFAULT_TIMEOUT, ProgressCallback, ValidateOptions
from envkit.sandbox.outcome import STAGE_WORDS as _STAGE_WORDS
from envkit.sandbox.outcome import strip_ansi, with_hint
from envkit.sandbox.provision import DEFAULT_BUILD_TIMEOUT, ProvisionedEnvironment
from envkit.sandbox.report import ValidationReport

if TYPE_CHECKING:
    from envkit._subprocess import Outcome

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TIMEOUT", "ValidateOptions", "ValidationReport", "predict", "validate"]


# --- the pipeline --------------------------------------------------------------------------------


class _Session:
    """One validation: the steps share the report they fill in.

    Creating it checks the model on the host (MLmodel, paths inside the model, signature), so
    that bad input fails before anything is built.
    """

    def __init__(
        self,
        model_uri: str | os.PathLike[str],
        options: ValidateOptions,
        *,
        need_input_example: bool = True,
    ) -> None:
        from envkit.models.uri import resolve_model_uri
        from envkit.sandbox.checks import check_model

        self.start = time.perf_counter()
        self.options = options
        self.timeout = options.timeout
        self.extra_env = dict(options.extra_env)
        self.progress = options.provision.progress
        self.model_dir = resolve_model_uri(model_uri)
        self.model = check_model(
            self.model_dir,
            need_input_example=need_input_example,
            trust=options.provision.trust,
        )
        self.report = ValidationReport(model=str(self.model_dir))
        from envkit.deps.provenance import partial_capture_note

        capture_note = partial_capture_note(self.model_dir)
        if capture_note is not None:
            self.report.warnings.append(capture_note)
        # Created just before the model runs, so that a build killed halfway leaves no
        # temporary directory behind.
        self.workdir: Path | None = None
        self.model_copy: Path | None = None  # a readable copy of the model (see run_model)
        self.ready: ProvisionedEnvironment | None = None
        self.predictions: dict[str, Any] | None = None

    def close(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.model_copy is not None:
            shutil.rmtree(self.model_copy, ignore_errors=True)
        if self.ready is not None:
            self.ready.close()

    def prepare(self) -> ProvisionedEnvironment:
        """Provision the environment; the report says what was chosen before the build, so
        that an environment that cannot be built is still described."""
        from envkit.sandbox.provision import prepare

        ready = self.ready = prepare(self.model_dir, self.options.provision, model=self.model)
        report = self.report
        report.backend, report.backend_note = ready.backend.name, ready.backend_note
        report.isolated = ready.isolated
        report.warnings.extend(ready.warnings)
        from envkit.sandbox.checks import gpu_build_note

        gpu_note = gpu_build_note(ready.spec.requirements)
        if gpu_note is not None:
            report.warnings.append(gpu_note)
        report.spec_notes.extend(ready.plan.notes)
        report.overrides = list(self.options.provision.overrides)
        report.spec = {**ready.spec.to_dict(), "key": ready.spec.key, "source": ready.plan.source}
        report.interpreter = ready.interpreter()
        ready.build()
        report.interpreter = ready.interpreter()
        report.cache = ready.cache.to_dict()
        report.tools = dict(ready.tools)
        report.timings.update(ready.timings)
        return ready

    def run_model(
        self,
        ready: ProvisionedEnvironment,
        *,
        input_path: Path | None,
        content_type: str | None,
        want_predictions: bool = False,
        stream: bool = True,
    ) -> None:
        """Run the input (or the input example) through the model in ``ready``; the report
        says how it went."""
        from envkit.sandbox.outcome import absorb_result
        from envkit.sandbox.tempdirs import make_tempdir

        workdir = self.workdir = make_tempdir("run")
        model_dir = self._model_for_nobody(ready)
        request = _runner_request(model_dir, ready, workdir, input_path, content_type)
        request.update(stream=stream, loader=self.options.loader)
        if want_predictions:
            request["predictions_path"] = str(workdir / "predictions.json")
        request_path = workdir / "request.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        self.progress("run", "loading the model and predicting")
        # What the runner reads and writes: a containerizing backend mounts exactly these.
        outcome = ready.run(
            ["python", "-m", "envkit.sandbox.runner", str(request_path)],
            cwd=workdir,
            timeout=self.timeout,
            extra_env=self.extra_env,
            paths=[model_dir] + ([input_path] if input_path else []),
            writable_paths=[workdir],
            contain=self.options.contain,
        )
        report = self.report
        report.timings["run"] = outcome.duration
        report.containment = _containment(ready, outcome, self.options.contain)
        report.model_log = strip_ansi((outcome.stdout + outcome.stderr).strip())
        data = _read_json(workdir / "result.json") or {}
        if outcome.timed_out:
            data = {**(_read_json(workdir / "status.json") or {}), **data}
        if want_predictions:
            self.predictions = _read_json(workdir / "predictions.json")
        absorb_result(report, data)
        self._judge(ready, outcome, data)
        if data.get("imported"):
            report.timings["compile"] = ready.compile_bytecode(data["imported"])

    def _model_for_nobody(self, ready: ProvisionedEnvironment) -> Path:
        """The model directory the run loads: the model's own, or, when the contained run drops
        root and some of its files are closed to others (safetensors writes weights 0600), a
        copy opened to reading, said in the report. Such files never keep the run as root: a
        model could ship one to get it."""
        from envkit.sandbox.contain import closed_files_inside, drops_root, readable_copy
        from envkit.sandbox.tempdirs import make_tempdir

        if not ready.isolated or not drops_root(self.options.contain):
            return self.model_dir
        closed = closed_files_inside(self.model_dir)
        if not closed:
            return self.model_dir
        self.model_copy = make_tempdir("model")
        copy = readable_copy(self.model_dir, self.model_copy / self.model_dir.name)
        names = ", ".join(p.relative_to(self.model_dir).as_posix() for p in closed[:3])
        more = f" and {len(closed) - 3} more" if len(closed) > 3 else ""
        self.report.warnings.append(
            f"{names}{more} of the model cannot be read by other users: it ran, as an "
            "unprivileged user, from a copy that they can read"
        )
        return copy

    def _judge(self, ready: ProvisionedEnvironment, outcome: Outcome, data: dict[str, Any]) -> None:
        """Fail the report for a timeout, a crash before reporting, or what the runner caught."""
        from envkit.sandbox.outcome import failure_text, network_failure_text

        log = _log_tail(self.report.model_log)
        if outcome.timed_out:
            stage = data.get("stage", "start")
            what = _STAGE_WORDS.get(stage, "the model")
            self._fail(
                "timeout",
                f"the model timed out after {self.timeout:.0f}s during {what}; raise --timeout "
                "if it is just slow, or check the model for a hang",
                detail=log,
                stage=stage,
            )
        elif not data:
            killed = ready.backend.killed_hint(outcome.returncode, outcome.extra)
            text = (
                f"{killed} (run with --verbose for its output)"
                if killed
                else (
                    f"the model process exited with code {outcome.returncode} before "
                    f"reporting; {strip_ansi(_last_line(outcome.stderr)) or 'no output'} (run "
                    "with --verbose for its output)"
                )
            )
            self._fail("crash", text, detail=log, stage="start")
        elif not data.get("ok"):
            error = data.get("error") or {}
            stage = str(error.get("stage", "?"))
            exit_code = error.get("exit_code")
            network = self.report.network if self._network_closed() else []
            self._fail(
                "network" if network else str(error.get("kind", stage)),
                network_failure_text(error, network)
                if network
                else failure_text(error, isolated=ready.isolated, backend=ready.backend.name),
                detail=strip_ansi(str(error["traceback"])) if error.get("traceback") else None,
                stage=stage,
                exit_code=exit_code if exit_code == EXIT_BAD_INPUT else EXIT_MODEL_FAILED,
                error_class=str(error["class"]) if error.get("class") else None,
            )
        elif self.report.network:
            self._network_warning()

    def _network_closed(self) -> bool:
        """Whether the model ran with no network: the containment's network measure held."""
        held = (self.report.containment or {}).get("network") or {}
        return bool(held.get("held"))

    def _network_warning(self) -> None:
        """A model that passed although it reached for the network: said, not failed."""
        from envkit.sandbox.outcome import network_text

        hosts = network_text(self.report.network)
        if self._network_closed():
            text = f"the model tried to reach the network ({hosts}) and went on without it"
        else:
            text = (
                f"the model reached the network ({hosts}) while it ran: a deployment with no "
                "network would differ (validate without --no-contain runs it with none)"
            )
        self.report.warnings.append(text)

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
        given = {*self.extra_env, *self.options.contain.pass_env}
        unset = [n for n in names if n not in os.environ and n not in self.extra_env]
        if unset:  # names only: values are never shown
            report.warnings.append(
                "the model records environment variables it reads that are not set here: "
                + ", ".join(unset)
            )
        withheld = [n for n in names if n in os.environ and n not in given]
        if withheld and report.containment and "environment" in report.containment:
            report.warnings.append(
                "the model records environment variables it reads that the sandbox did not "
                f"pass it: {', '.join(withheld)} (pass them with --env NAME)"
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
                ready = self.prepare()
            except (EnvironmentBuildError, SubprocessError) as exc:
                self.env_failed(exc)
            else:
                self.run_model(ready, **options)
        finally:
            self.close()

    def env_failed(self, exc: EnvkitError) -> None:
        report = self.report
        report.status = "env_failed"
        report.exit_code = EXIT_ENV_FAILED
        message = with_hint(exc, strip_ansi(exc.message))
        kind = type(exc).__name__
        report.error = {
            "kind": kind,
            "stage": "environment",
            "message": message,
            "detail": strip_ansi(exc.detail) if exc.detail else None,
        }
        reasons = exc.reasons if isinstance(exc, BackendUnavailableError) else None
        if reasons:
            report.error["reasons"] = dict(reasons)


# --- checks on the host, before anything is built ----------------------------------------------


def _containment(
    ready: ProvisionedEnvironment, outcome: Outcome, policy: ContainmentPolicy
) -> dict[str, Any] | None:
    """What held for the model's process (``None``: nothing was attempted)."""
    held = outcome.extra.get("containment")
    if isinstance(held, dict):
        return held
    if not ready.isolated:
        why = f"the {ready.backend.name} backend runs in this interpreter (not isolated)"
    elif not policy.enabled:
        why = "--no-contain"
    else:
        return None
    return {"contained": {"held": False, "detail": why}}


def _runner_request(
    model_dir: Path,
    ready: ProvisionedEnvironment,
    workdir: Path,
    input_path: Path | None,
    content_type: str | None,
) -> dict[str, Any]:
    """What the runner (:mod:`envkit.sandbox.runner`) is asked to do, as its request file."""
    from envkit.sandbox.spec import requirement_name

    return {
        "model_dir": str(model_dir),
        "input_path": str(input_path) if input_path else None,
        "content_type": content_type,
        "result_path": str(workdir / "result.json"),
        "status_path": str(workdir / "status.json"),
        "predictions_path": None,
        "stream": True,
        "requirements": [r for r in ready.spec.requirements if requirement_name(r) != "envkit"],
        "build_dependencies": list(ready.spec.build_dependencies),
        "check_unrequested": ready.isolated,
        "report_imports": ready.compiles_bytecode,
    }


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


def _run(
    model_uri: str | os.PathLike[str],
    *,
    input_data: Any,
    input_path: str | os.PathLike[str] | None,
    content_type: str | None,
    output_path: str | os.PathLike[str] | None,
    want_predictions: bool,
    stream: bool,
    options: ValidateOptions,
) -> _Session:
    """Check everything on the host, then build (or reuse) the environment and run the model
    there: the session, whose report says how it went."""
    from envkit.sandbox.checks import check_input, check_input_file, input_type, write_input_data
    from envkit.sandbox.tempdirs import make_tempdir

    if input_data is not None and input_path is not None:
        raise UsageError("give input_data or input_path, not both")
    kind = input_type(input_path, content_type)
    path = check_input_file(input_path)
    session = _Session(
        model_uri, options, need_input_example=input_path is None and input_data is None
    )
    tmp = None
    try:
        if input_data is not None:
            kind = kind or "json"
            tmp = make_tempdir("input")
            path = tmp / ("input.csv" if kind == "csv" else "input.json")
            write_input_data(input_data, path, kind)
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
    contain: bool = True,
    pass_env: Sequence[str] = (),
    trust_model: bool = False,
    trusted_types: Sequence[str] = (),
    loader: str = "auto",
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
        contain: run the model contained (a reduced environment, no network, read-only
            inputs, limits, and ``nobody`` when envkit is root: :mod:`envkit.sandbox.contain`);
            ``pass_env`` names host variables it still gets (those it records reading).
        trust_model, trusted_types: skip the pickle scan, or accept these globals in it.
        loader: ``auto`` (default: envkit's loader for the flavors envkit knows, such as
            ``mlflow.sklearn`` and ``mlflow.pyfunc.model``, MLflow's for the others, MLflow
            installed as the model records it but not imported), ``envkit`` or ``mlflow``.
            ``report.loader`` says which ran.

    Returns a :class:`ValidationReport`; a failure of the model or of the environment build is
    in ``report.error`` (``report.raise_for_error()`` raises it). Unreadable models, malformed
    input and bad options raise :class:`~envkit.errors.EnvkitError` (exit code 2) before
    anything is built.
    """
    options = ValidateOptions.from_call(locals())
    session = _run(
        model_uri,
        input_data=input_data,
        input_path=input_path,
        content_type=content_type,
        output_path=output_path,
        want_predictions=False,
        stream=stream,
        options=options,
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
    contain: bool = True,
    pass_env: Sequence[str] = (),
    trust_model: bool = False,
    trusted_types: Sequence[str] = (),
    loader: str = "auto",
) -> Any:
    """Predict with the model in its rebuilt environment (like ``mlflow.models.predict``).

    Give the input as ``input_path`` (a serving payload JSON or CSV file) or ``input_data``
    (a DataFrame, ndarray, list, dict or a serving payload dict). Returns the predictions as
    JSON data; with ``output_path`` they are also written there as ``{"predictions": ...}``.
    Takes :func:`validate`'s options too (``overrides`` is ``pip_requirements_override``,
    ``extra_env`` is ``extra_envs``). Raises :class:`~envkit.errors.EnvkitError` when the
    input, the environment or the model fails.
    """
    options = ValidateOptions.from_call(locals())
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
        options=options,
    )
    session.report.raise_for_error()
    if session.predictions is None:
        raise ModelFailedError("the model produced no predictions (is the input empty?)")
    return session.predictions.get("predictions")
