"""Decide a model's requirements at save time and write its environment files.

The save pipeline calls :func:`check_user_requirements` before anything is written (a bad line
or a missing file fails early), then :func:`capture_environment` on the complete staged model:

1. unless ``pip_requirements`` replaces inference, the model is loaded (and predicts on its
   input example) in a fresh interpreter that records what it imports and which environment
   variable names it reads (:mod:`envkit.deps.imports`);
2. imported modules are mapped to installed distributions and pinned (``==`` the installed
   version, a local label such as ``+cpu`` kept: that build is what the model ran with; the
   remote extra indexes configured here are recorded beside it, see ``_Builder._local_build``);
3. the flavor's own requirements (``envkit``, ``scikit-learn``...) are always included, the
   user's ``extra_pip_requirements`` are added and win over inferred pins (with a warning when
   the installed version does not satisfy them), constraints files are copied into the model;
4. every requirement gets a provenance record (``requirements.provenance.json``).

``pip_requirements`` replaces step 1 and the flavor's libraries, as in MLflow, but ``envkit``
itself (pinned to the running version: the loader module lives in it) is always added, as MLflow
adds ``mlflow``; a flavor library the list lacks (``scikit-learn``) is a warning, not added. A
model with a signature always gets ``pandas`` and ``numpy`` too (source ``envkit``): envkit's
schema enforcement imports them when the model predicts.

When nothing predicted (no input example, the example failed, the capture failed), a static
pass (:mod:`envkit.deps.static`) adds the installed distributions the model's code and pickles
reference, with source ``static``.

When the capture fails (the model does not load in a fresh process, a timeout) or its example
fails, the save still succeeds, its capture status ``partial`` with the reason, and a
:class:`CaptureWarning` saying why, unless ``strict=True`` / ``ENVKIT_STRICT_CAPTURE=1`` makes it
a :class:`~envkit.errors.CaptureError`.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit.deps.envfiles import write_environment_files
from envkit.deps.envvars import allowlisted, recording_enabled, write_env_vars_file
from envkit.deps.provenance import (
    CAPTURE_OK,
    CAPTURE_PARTIAL,
    CAPTURE_SKIPPED,
    INSTALL_ARCHIVE,
    INSTALL_EDITABLE,
    INSTALL_INDEX,
    INSTALL_LOCAL,
    INSTALL_VCS,
    SOURCE_ENVKIT,
    SOURCE_FLAVOR,
    SOURCE_INFERRED,
    SOURCE_STATIC,
    SOURCE_USER,
    CaptureRecord,
    IndexConfig,
    Provenance,
    RequirementProvenance,
    install_info,
    write_provenance,
)
from envkit.deps.requirements import (
    RequirementLines,
    RequirementsReader,
    parse_requirement_line,
    requirement_name,
)
from envkit.errors import CaptureError, InvalidRequirementError
from envkit.models.model import Model

if TYPE_CHECKING:
    from envkit.deps.imports import CapturedImports, NeededDistributions

logger = logging.getLogger(__name__)

# The reason the capture subprocess is off in this context (capture_disabled), or None.
_CAPTURE_OFF: ContextVar[str | None] = ContextVar("envkit_capture_off", default=None)


__all__ = [
    "CaptureWarning",
    "CapturedEnvironment",
    "RequirementWarning",
    "UserRequirements",
    "capture_disabled",
    "capture_environment",
    "check_user_requirements",
    "decide_requirements",
]


def _literal_credentials(line: str) -> bool:
    """Whether ``line`` has a URL with ``user[:password]@`` that is not all ``${VARIABLES}``."""
    for userinfo in re.findall(r"://([^/@\s]+)@", line):
        if re.sub(r"\$\{[A-Za-z0-9_]+\}|:", "", userinfo):
            return True
    return False


class CaptureWarning(UserWarning):
    """The requirements could not be (fully) captured; the message says why and what was used."""


class RequirementWarning(UserWarning):
    """A recorded requirement needs attention (stripped local label, editable/VCS/local install,
    a user pin that overrides the installed version)."""


# -- user requirements ---------------------------------------------------------------------------


@dataclass
class UserRequirements:
    """What the user asked for, validated.

    ``mode`` is ``"replace"`` (``pip_requirements``), ``"extra"`` (``extra_pip_requirements``) or
    None. ``requirements`` holds requirement and option lines (``-r`` expanded),
    ``constraints`` the lines of every ``-c`` file given (copied into the model).
    """

    mode: str | None = None
    requirements: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)


def _collect(value: Sequence[str] | str | os.PathLike[str], what: str) -> RequirementLines:
    # (a line is "line in reqs.txt:3" in messages here: the user's file, not the model's)
    reader = RequirementsReader(label="line")
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.exists() and isinstance(value, str):
            _refuse_a_requirement_for_a_file(value, what)
        reader.read_file(path)
        return reader.result()
    if not isinstance(value, Sequence):
        raise InvalidRequirementError(
            f"{what} must be a list of requirement strings or the path of a requirements file, "
            f"not {type(value).__name__}"
        )
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequirementError(
                f"{what}[{position}] must be a string, not {type(item).__name__}"
            )
        reader.add(item, source=f"requirement {what}[{position}]", base=Path.cwd())
    return reader.result()


def _refuse_a_requirement_for_a_file(value: str, what: str) -> None:
    """A string that names no file but reads as a requirement: the user meant a list."""
    try:
        looks_like_requirement = parse_requirement_line(value) is not None
    except InvalidRequirementError:
        looks_like_requirement = False
    if looks_like_requirement:
        raise InvalidRequirementError(
            f"{what}={value!r}: a string names a requirements file, which does not "
            f"exist; to give requirements, pass a list: {what}=[{value!r}]"
        )


def check_user_requirements(
    pip_requirements: Sequence[str] | str | os.PathLike[str] | None,
    extra_pip_requirements: Sequence[str] | str | os.PathLike[str] | None,
) -> UserRequirements:
    """Parse and validate the user's requirements before anything is written.

    A list holds requirement lines (``-r file`` and ``-c constraints.txt`` are read relative to
    the working directory); a string or path names a requirements file (its ``-r``/``-c``
    relative to it). Raises :class:`~envkit.errors.InvalidRequirementError` naming the line
    or file.
    """
    if pip_requirements is not None and extra_pip_requirements is not None:
        from envkit.errors import UsageError

        raise UsageError("pass pip_requirements or extra_pip_requirements, not both")
    if pip_requirements is not None:
        c = _collect(pip_requirements, "pip_requirements")
        return UserRequirements("replace", list(c.without_constraint_lines()), list(c.constraints))
    if extra_pip_requirements is not None:
        c = _collect(extra_pip_requirements, "extra_pip_requirements")
        return UserRequirements("extra", list(c.without_constraint_lines()), list(c.constraints))
    return UserRequirements()


# -- deciding the requirement set ----------------------------------------------------------------


def _satisfied_by(line: str, version: str | None) -> bool:
    """Whether ``version`` satisfies the requirement line (URL requirements always do)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    if version is None:
        return False
    try:
        req = Requirement(line.split(" --hash", 1)[0])
    except InvalidRequirement:
        return True
    if req.url or not req.specifier:
        return True
    try:
        return req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


# What envkit's schema enforcement imports when a model with a signature predicts.
ENFORCEMENT_REQUIREMENTS = ("pandas", "numpy")


def _pinned_version(line: str) -> str | None:
    """The version of an ``==`` pin (``envkit==0.1.0`` -> ``0.1.0``), else None."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        specifiers = list(Requirement(line).specifier)
    except InvalidRequirement:
        return None
    if len(specifiers) == 1 and specifiers[0].operator == "==":
        return specifiers[0].version
    return None


def _split_local(version: str) -> tuple[str, str | None]:
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        return version, None
    if parsed.local is None:
        return version, None
    return version.split("+", 1)[0], parsed.local


class _Builder:
    """Accumulates requirement lines with their provenance, in output order."""

    def __init__(self, index_config: IndexConfig, *, warn_installs: bool = True) -> None:
        from envkit.deps.distributions import current_index

        self.index = current_index()
        self.index_config = index_config
        self.entries: dict[str, RequirementProvenance] = {}  # key: canonical name or line
        self.warn_installs = warn_installs
        self.messages: list[str] = []

    def _record(self, name: str, requirement: str, source: str) -> RequirementProvenance:
        dist = self.index.distribution(name)
        record = RequirementProvenance(requirement=requirement, name=name, source=source)
        if dist is None:
            return record
        record.installed_version = str(dist.version)
        info = install_info(dist)
        record.install = info.kind
        record.url = info.url
        if info.kind == INSTALL_INDEX:
            record.index_url = self.index_config.index_url
        return record

    def _warn_install(self, name: str, requirement: str, kind: str, url: str | None) -> None:
        if kind == INSTALL_EDITABLE:
            self.messages.append(
                f"{name} is an editable install ({url}); the recorded {requirement} names a "
                "release on the index, which may not exist or may differ from your working copy. "
                "Publish it and re-save, or pass its wheel or VCS URL in "
                "extra_pip_requirements, or ship its code with code_paths"
            )
        elif kind == INSTALL_VCS:
            self.messages.append(
                f"{name} was installed from {url}; the recorded {requirement} names a release "
                f"on the index. To record the exact source, pass "
                f"extra_pip_requirements=['{name} @ {url}']"
            )
        elif kind in (INSTALL_LOCAL, INSTALL_ARCHIVE):
            self.messages.append(
                f"{name} was installed from a local path ({url}); the recorded {requirement} "
                "may not exist on the index. Publish it, or pass a URL the deployment can reach "
                "in extra_pip_requirements"
            )

    def pinned(self, name: str, source: str, modules: list[str] | None = None) -> None:
        """Add ``name`` pinned to its installed version."""
        if name in self.entries:
            if modules:
                self.entries[name].modules = sorted(set(self.entries[name].modules) | set(modules))
            return
        version = self.index.version(name)
        if version is None:
            record = RequirementProvenance(requirement=name, name=name, source=source)
            record.note = "not installed when the model was saved"
        else:
            record = self._record(name, f"{name}=={version}", source)
            record.local_label = _split_local(version)[1]
        record.modules = sorted(modules or [])
        self.entries[name] = record

    def line(self, line: str, source: str, *, user: bool) -> None:
        """Add a requirement line as given (flavor defaults, user lines)."""
        if user and _literal_credentials(line):
            from envkit._subprocess import redact_url

            self.messages.append(
                f"your requirement {redact_url(line)!r} carries a user name or password in its "
                "URL: it is written into requirements.txt and conda.yaml as given, for anyone "
                "who can read the model. pip and uv expand ${VAR} there: write "
                "https://${INDEX_USER}:${INDEX_PASSWORD}@host/... and set those variables where "
                "the model is installed"
            )
        name = requirement_name(line)
        if name is None:
            key = line
            self.entries.pop(key, None)
            self.entries[key] = RequirementProvenance(requirement=line, name=None, source=source)
            return
        if source == SOURCE_FLAVOR and name != "envkit" and name not in self.entries:
            version = self.index.version(name)
            if version is not None and line.replace(" ", "") in (
                f"{name}=={version}",
                f"{line.split('==', 1)[0]}=={version}",
            ):
                self.pinned(name, source)  # the installed version, with its local label
                return
        existing = self.entries.get(name)
        if existing is not None and existing.requirement == line:
            if source == SOURCE_USER:
                existing.source = SOURCE_USER
            return
        installed = self.index.version(name)
        if user and existing is not None and not _satisfied_by(line, installed):
            self.messages.append(
                f"your requirement {line!r} replaces the {existing.source} {existing.requirement!r}"
                f": the installed {name} {installed} does not satisfy it, so the model will run "
                "with a different version than the one it was saved with"
            )
        elif (
            user
            and existing is None
            and name != "envkit"
            and installed is not None
            and not _satisfied_by(line, installed)
        ):
            self.messages.append(
                f"your requirement {line!r} does not allow the installed {name} {installed}, so "
                "the model will run with a different version than the one it was saved with"
            )
        record = (
            self._record(name, line, source)
            if installed is not None
            else (RequirementProvenance(requirement=line, name=name, source=source))
        )
        if existing is not None:
            record.modules = existing.modules
            del self.entries[name]
        self.entries[name] = record

    def flavor_needs(self, default_requirements: Sequence[str], framework: str | None) -> None:
        """What loading the model needs, when ``pip_requirements`` replaced inference.

        The framework (``envkit``: its loader module loads the model) is added pinned to the
        running version unless the user lists it (a warning when their line excludes the
        running version). Other flavor requirements the list lacks are reported, not added,
        unless the framework itself depends on them.
        """
        from envkit.deps.distributions import requires

        brought: set[str] | None = None
        missing: list[str] = []
        for line in default_requirements:
            name = requirement_name(line)
            if name is None:
                continue
            existing = self.entries.get(name)
            if name == framework:
                running = _pinned_version(line)
                if existing is None:
                    self.line(line, SOURCE_FLAVOR, user=False)
                    self.entries[
                        name
                    ].note = "always included: the model's loader module lives in it"
                elif running is not None and not _satisfied_by(existing.requirement, running):
                    self.messages.append(
                        f"your requirement {existing.requirement!r} excludes the running {name} "
                        f"{running}, which wrote this model and whose loader module loads it; "
                        f"the model may not load with another version (list {line!r} instead)"
                    )
                continue
            if existing is not None:
                continue
            if brought is None:
                brought = requires(self.index, framework) if framework else set()
            if name in brought:
                continue  # installed with the framework anyway
            missing.append(line)
        if missing:
            names = ", ".join(str(requirement_name(line)) for line in missing)
            self.messages.append(
                f"pip_requirements does not list {names}, which loading this model needs; "
                f"{'it was' if len(missing) == 1 else 'they were'} not added. Add "
                f"{', '.join(repr(line) for line in missing)} (installed here) to "
                "pip_requirements, or pass extra_pip_requirements instead to keep inference"
            )

    def enforcement_needs(self) -> None:
        """pandas and numpy, unless listed: envkit's schema enforcement imports them."""
        for name in ENFORCEMENT_REQUIREMENTS:
            if name in self.entries:
                continue
            self.pinned(name, SOURCE_ENVKIT)
            record = self.entries[name]
            note = (
                "the model has a signature: envkit's schema enforcement imports it when the "
                "model predicts"
            )
            record.note = f"{note}; {record.note}" if record.note else note

    def _final_messages(self) -> None:
        """Warnings about the pins that remain (a user line replacing one settles it)."""
        for record in list(self.entries.values()):
            if record.source == SOURCE_USER or record.name in (None, "envkit"):
                continue
            if record.local_label and record.requirement.endswith(f"+{record.local_label}"):
                self._local_build(record)
            if self.warn_installs:
                self._warn_install(str(record.name), record.requirement, record.install, record.url)

    def _local_build(self, record: RequirementProvenance) -> None:
        """A pin with a local label (``torch==2.13.0+cpu``) installs only from where that build
        is served: the environment's remote extra indexes go into requirements.txt with it (once);
        with none, and no find-links either, nothing says where it came from: a warning."""
        remote = self.index_config.remote_extra_indexes()
        for url in remote:
            line = f"--extra-index-url {url}"
            if line not in self.entries:
                option = RequirementProvenance(requirement=line, name=None, source=SOURCE_ENVKIT)
                option.note = f"serves the local build {record.requirement}"
                self.entries[line] = option
        if remote or self.index_config.find_links:
            return
        self.messages.append(
            f"{record.name} {record.installed_version} is a local build (+{record.local_label}): "
            f"the recorded {record.requirement} installs only from an index that serves it, and "
            "this environment names none (no extra index, no find-links). Add it with "
            "extra_pip_requirements, e.g. '--extra-index-url https://download.pytorch.org/whl/"
            f"{record.local_label}' for PyTorch's builds"
        )

    def result(self, framework: str | None) -> list[RequirementProvenance]:
        """Framework line first, then requirements sorted by name, user lines in their order."""
        self._final_messages()
        records = list(self.entries.values())
        first = [r for r in records if r.name is not None and r.name == framework]
        named = sorted(
            (
                r
                for r in records
                if r.name is not None and r.name != framework and r.source != SOURCE_USER
            ),
            key=lambda r: str(r.name),
        )
        others = [r for r in records if r.name is None and r.source != SOURCE_USER]
        user = [r for r in records if r.source == SOURCE_USER and r.name != framework]
        return first + named + others + user


@dataclass
class Decision:
    """The requirement set decided for a model, before anything is written.

    ``messages`` are the warnings to show, in order; ``capture_failures`` those of them that say
    the capture failed (a :class:`CaptureWarning`; the others are a :class:`RequirementWarning`).
    """

    records: list[RequirementProvenance]
    constraints: list[str]
    env_vars: list[str]
    capture: CaptureRecord
    unresolved_modules: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    index_config: IndexConfig = field(default_factory=IndexConfig)
    capture_failures: list[str] = field(default_factory=list)

    def capture_failed(self, message: str) -> None:
        """Add a message saying the capture (or part of it) failed."""
        self.messages.append(message)
        self.capture_failures.append(message)

    @property
    def requirements(self) -> list[str]:
        return [r.requirement for r in self.records]

    def provenance(self) -> Provenance:
        from envkit._version import __version__

        return Provenance(
            requirements=self.records,
            capture=self.capture,
            python=platform.python_version(),
            envkit_version=__version__,
            index=self.index_config,
            env_vars=list(self.env_vars),
            unresolved_modules=list(self.unresolved_modules),
        )


def _uncaptured_decision(
    user: UserRequirements,
    default_requirements: Sequence[str],
    *,
    framework: str | None,
    has_signature: bool,
    index_config: IndexConfig,
    capture: CaptureRecord,
) -> Decision:
    """The requirements decided without a capture: the user's ``pip_requirements`` (and what
    the flavor needs of them), or the flavor's defaults plus the user's extras."""
    builder = _Builder(index_config)
    if user.mode == "replace":
        for line in user.requirements:
            builder.line(line, SOURCE_USER, user=True)
        builder.flavor_needs(default_requirements, framework)
    else:
        for line in default_requirements:
            builder.line(line, SOURCE_FLAVOR, user=False)
        for line in user.requirements:
            builder.line(line, SOURCE_USER, user=True)
    if has_signature:
        builder.enforcement_needs()
    return Decision(
        records=builder.result(framework),
        constraints=list(user.constraints),
        env_vars=[],
        capture=capture,
        messages=builder.messages,
        index_config=index_config,
    )


def _record_env_var_names(
    decision: Decision,
    model_dir: str | os.PathLike[str],
    input_example_info: Mapping[str, Any],
    *,
    timeout: float | None,
    strict: bool,
    strict_label: str,
) -> None:
    """Run the model on its example only to record the environment variable names it reads."""
    from envkit.deps.imports import CaptureFailed, capture_imports

    try:
        names_only = capture_imports(
            model_dir, input_example_info=input_example_info, timeout=timeout
        )
    except CaptureFailed as exc:
        if strict:
            raise CaptureError(
                f"recording the environment variables the model reads failed: "
                f"{exc.reason}{strict_label}",
                detail=exc.detail,
            ) from None
        decision.capture_failed(
            f"capturing the environment variable names the model reads failed: "
            f"{exc.reason}; environment_variables.txt was not written"
        )
        return
    decision.env_vars = allowlisted(names_only.env_vars)
    decision.capture.reason = f"{decision.capture.reason}; environment variable names recorded"
    decision.capture.predicted = names_only.predicted


@contextmanager
def capture_disabled(reason: str = "capture turned off by the caller") -> Iterator[None]:
    """Within this context, saves skip the capture subprocess (internal switch).

    A model saved so records what it would record if the capture failed, without a warning:
    the flavor's requirements, the user's, and pandas/numpy for a signature; its provenance
    says the capture was skipped and why. For envkit's own tests of everything but capture,
    where a subprocess per save costs a second each. Not thread-inherited: a save in another
    thread captures as usual.
    """
    token = _CAPTURE_OFF.set(reason)
    try:
        yield
    finally:
        _CAPTURE_OFF.reset(token)


def decide_requirements(
    model_dir: str | os.PathLike[str],
    *,
    default_requirements: Sequence[str],
    user_requirements: UserRequirements,
    input_example_info: Mapping[str, Any] | None,
    strict: bool,
    framework: str | None = "envkit",
    timeout: float | None = None,
    strict_label: str = " (strict mode)",
    has_signature: bool = False,
) -> Decision:
    """Capture (unless replaced by the user) and merge; warnings are returned, not emitted.

    ``has_signature``: the model has a signature, so its predictions go through envkit's
    schema enforcement (which needs pandas and numpy). Raises
    :class:`~envkit.errors.CaptureError` when the capture fails under ``strict``, and
    :class:`~envkit.errors.UsageError` for an invalid ``ENVKIT_RECORD_ENV_VARS_IN_MODEL_LOGGING``.
    """
    from envkit.deps.distributions import warm_in_background
    from envkit.deps.imports import (
        CaptureFailed,
        capture_imports,
        needed_distributions,
    )

    record_env = recording_enabled()  # an invalid switch fails before anything runs
    index_config = IndexConfig.current()
    user = user_requirements
    off_reason = _CAPTURE_OFF.get()
    if off_reason is not None or user.mode == "replace":
        decision = _uncaptured_decision(
            user,
            default_requirements,
            framework=framework,
            has_signature=has_signature,
            index_config=index_config,
            capture=CaptureRecord(
                CAPTURE_SKIPPED, reason=off_reason or "pip_requirements replaces inference"
            ),
        )
        if off_reason is None and input_example_info and record_env:
            # No requirement inference, but the names the model reads while predicting are
            # still worth recording for whoever deploys it.
            _record_env_var_names(
                decision,
                model_dir,
                input_example_info,
                timeout=timeout,
                strict=strict,
                strict_label=strict_label,
            )
        return decision

    warmer = warm_in_background()
    messages: list[str] = []
    failures: list[str] = []  # (the messages that say the capture failed)
    captured: CapturedImports | None = None
    try:
        captured = capture_imports(
            model_dir,
            input_example_info=input_example_info,
            record_env_vars=record_env,
            timeout=timeout,
        )
    except CaptureFailed as exc:
        if strict:
            raise CaptureError(
                f"capturing the model's requirements failed: {exc.reason}{strict_label}",
                detail=exc.detail,
            ) from None
        failures.append(
            f"capturing the model's requirements failed: {exc.reason}. The model was saved with "
            f"the flavor's default requirements ({', '.join(default_requirements)}) and what "
            "its code and pickles reference; fix the failure, or pass "
            "pip_requirements/extra_pip_requirements"
        )
        messages.append(failures[-1])
        capture = CaptureRecord(CAPTURE_PARTIAL, reason=exc.reason)
    warmer.join()
    builder = _Builder(index_config)
    builder.messages = messages
    unresolved: list[str] = []
    env_vars: list[str] = []
    for line in default_requirements:
        builder.line(line, SOURCE_FLAVOR, user=False)
    if captured is not None:
        capture = _captured_record(captured, strict=strict, strict_label=strict_label)
        if capture.reason:
            messages.append(capture.reason)
            failures.append(capture.reason)
        unresolved = _add_inferred(
            builder, needed_distributions(captured, builder.index, model_dir=model_dir)
        )
        if record_env:
            env_vars = allowlisted(captured.env_vars)
    if captured is None or not captured.predicted:
        # Nothing ran the model's predict: what its code and pickles reference fills the gap.
        unresolved = _add_static(builder, model_dir, unresolved, capture)
    if unresolved:
        logger.warning(
            "the model imports %s, which no installed distribution provides and which is "
            "not part of the model; it must be importable where the model runs (install it, "
            "or ship it with code_paths)",
            ", ".join(unresolved),
        )
    for line in user.requirements:
        builder.line(line, SOURCE_USER, user=True)
    if has_signature:
        builder.enforcement_needs()  # e.g. a signature given without an input example
    return Decision(
        records=builder.result(framework),
        constraints=list(user.constraints),
        env_vars=env_vars,
        capture=capture,
        unresolved_modules=unresolved,
        messages=builder.messages,
        index_config=index_config,
        capture_failures=failures,
    )


def _captured_record(
    captured: CapturedImports, *, strict: bool, strict_label: str
) -> CaptureRecord:
    """The capture record of a capture process that ran (``partial`` when predict failed)."""
    record = CaptureRecord(
        CAPTURE_OK, seconds=round(captured.seconds, 3), predicted=captured.predicted
    )
    if captured.predict_error:
        reason = (
            f"the model failed to predict on its input example in the capture process: "
            f"{captured.predict_error}; requirements imported only while predicting may be "
            "missing"
        )
        if strict:
            raise CaptureError(reason + strict_label)
        record.status = CAPTURE_PARTIAL
        record.reason = reason
    return record


def _add_inferred(builder: _Builder, needed: NeededDistributions) -> list[str]:
    """Add what the capture process saw imported; returns the unresolved modules."""
    for name, modules in needed.distributions.items():
        builder.pinned(name, SOURCE_INFERRED, modules)
    if needed.optional:
        logger.debug("optional imports not recorded: %s", ", ".join(sorted(needed.optional)))
    return list(needed.unresolved)


def _add_static(
    builder: _Builder,
    model_dir: str | os.PathLike[str],
    unresolved: list[str],
    capture: CaptureRecord,
) -> list[str]:
    """The static pass (:mod:`envkit.deps.static`): add the installed distributions the model's
    code and pickles reference that the capture did not record; returns the unresolved modules
    of both passes."""
    from envkit.deps.imports import is_excluded
    from envkit.deps.static import needed_statically, read_model

    found = needed_statically(read_model(model_dir), builder.index, model_dir)
    added = []
    for name, modules in sorted(found.distributions.items()):
        if is_excluded(name) or builder.index.version(name) is None:
            continue
        if name not in builder.entries:
            added.append(name)
        builder.pinned(name, SOURCE_STATIC, modules)
    capture.static = sorted(added)
    return sorted(set(unresolved) | set(found.unresolved))


def emit_warnings(decision: Decision, *, stacklevel: int = 2) -> None:
    """Emit a decision's messages: capture failures as CaptureWarning, others RequirementWarning.

    ``stacklevel`` counts from the caller of this function (1 = that caller).
    """
    for message in decision.messages:
        category: type[UserWarning] = (
            CaptureWarning if message in decision.capture_failures else RequirementWarning
        )
        warnings.warn(message, category, stacklevel=stacklevel + 1)


# -- the save pipeline's entry points ------------------------------------------------------------


@dataclass
class CapturedEnvironment:
    """Requirements, constraints and env var names decided for a model, ready to be written."""

    requirements: list[str]
    env_var_names: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    provenance: Provenance | None = None

    def write(self, model_dir: Path, model: Model) -> None:
        """Write the environment files into ``model_dir`` and reference them from ``model``."""
        write_environment_files(model_dir, self.requirements, constraints=self.constraints)
        if self.provenance is not None:
            write_provenance(model_dir, self.provenance)
        write_env_vars_file(model_dir, self.env_var_names)
        model.env_vars = list(self.env_var_names) or None
        conf = model.flavors.get("python_function")
        if conf is not None:
            conf["env"] = {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}


def capture_environment(
    model_dir: Path,
    model: Model,
    *,
    default_requirements: list[str],
    user_requirements: UserRequirements,
    code_dir: str | None = None,
    has_input_example: bool = False,
    strict: bool = False,
    timeout: float | None = None,
    **_: Any,
) -> CapturedEnvironment:
    """Decide the requirements of the complete model staged at ``model_dir`` (see module doc).

    ``code_dir`` (the model's ``code_paths`` copy) is on the loader's ``sys.path`` in the capture
    process, so its imports are captured too.
    """
    decision = decide_requirements(
        model_dir,
        default_requirements=default_requirements,
        user_requirements=user_requirements,
        input_example_info=model.saved_input_example_info if has_input_example else None,
        strict=strict,
        timeout=timeout,
        has_signature=has_signature(model),
    )
    # capture_environment <- save_model_directory <- flavor.save_model <- the user's code
    emit_warnings(decision, stacklevel=4)
    return CapturedEnvironment(
        requirements=decision.requirements,
        env_var_names=decision.env_vars,
        constraints=decision.constraints,
        provenance=decision.provenance(),
    )


def has_signature(model: Model) -> bool:
    """Whether ``model`` records a signature (an unreadable one counts: it is recorded)."""
    from envkit.errors import EnvkitError

    try:
        return model.signature is not None
    except EnvkitError:
        return True
