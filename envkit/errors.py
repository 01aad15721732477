"""One exception hierarchy; every user-facing failure is an :class:`EnvkitError`.

Each error carries an ``exit_code`` (the CLI maps it to the process exit status) and a one-line
message that says what failed and what to try next. Extra detail (tracebacks, subprocess
output) goes into ``detail`` and is shown only with ``--verbose``.

Exit codes:
    0  success
    1  the model failed (load or predict error, timeout, schema violation, failed ``--check``)
    2  bad usage or unreadable input (malformed MLmodel, unknown flavor, invalid requirement)
    3  the environment could not be built (install failure, no interpreter, backend unavailable)
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_MODEL_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENV_FAILED = 3


class EnvkitError(Exception):
    """Base of every error envkit raises on purpose."""

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


# --- bad input (exit 2) -------------------------------------------------------------------------


class ModelFormatError(EnvkitError):
    """The model directory or its MLmodel file is missing, malformed or inconsistent."""


class UnknownFlavorError(ModelFormatError):
    """The model has no flavor envkit (or an installed plugin) knows how to load."""


class UnsafePathError(ModelFormatError):
    """A path recorded in the model escapes the model directory (``..`` or a symlink)."""


class NoRecordedEnvironmentError(ModelFormatError):
    """The model records no environment (no python_env.yaml, conda.yaml or requirements.txt,
    or only a requirements.txt where a Python version is needed and the MLmodel has none)."""


class StaleLockError(ModelFormatError):
    """The model's ``requirements.lock`` was compiled from requirements that changed since."""


class ModelExistsError(EnvkitError):
    """Refusing to save onto an existing non-empty directory without ``overwrite=True``."""


class InvalidRequirementError(EnvkitError):
    """A requirement line or requirements/constraints file cannot be read or parsed.

    ``requirement`` is the failing line (None when a whole file failed), ``source`` says where
    it was read (``"requirement in requirements.txt:3"``).
    """

    def __init__(
        self,
        message: str,
        *,
        requirement: str | None = None,
        source: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.requirement = requirement
        self.source = source


class ModelUriError(EnvkitError):
    """A model URI (path, ``runs:/``) cannot be resolved."""


class UsageError(EnvkitError):
    """Invalid arguments or options."""


# --- the model failed (exit 1) ------------------------------------------------------------------


class ModelFailedError(EnvkitError):
    """The model raised while loading or predicting."""

    exit_code = EXIT_MODEL_FAILED


class SchemaEnforcementError(ModelFailedError):
    """Input does not match the model signature (names the column/param, expected, given)."""


class MissingModuleError(ModelFailedError):
    """Loading the model needs a module this environment does not have (``module`` names it):
    the model's requirements miss a package, or this environment does not hold them."""

    def __init__(self, message: str, *, module: str | None = None, detail: str | None = None):
        super().__init__(message, detail=detail)
        self.module = module


class LoaderImportError(MissingModuleError):
    """The ``loader_module`` named by the model (or a module it imports) is not installed in
    the model's environment: the model failed (exit 1), its requirements miss a package.
    A ``loader_module`` that is not a module name at all is a :class:`ModelFormatError`."""


class ModelTimeoutError(ModelFailedError):
    """The model did not finish loading or predicting within the timeout."""


class DependencyMismatchError(ModelFailedError):
    """The running environment does not satisfy the model's recorded requirements."""


class CaptureError(EnvkitError):
    """Capturing a model's requirements failed (only raised under strict capture)."""

    exit_code = EXIT_MODEL_FAILED


# --- environment (exit 3) -----------------------------------------------------------------------


class EnvironmentBuildError(EnvkitError):
    """The sandbox environment could not be built."""

    exit_code = EXIT_ENV_FAILED


class InterpreterNotFoundError(EnvironmentBuildError):
    """No local interpreter matches the requested Python version."""


class BackendUnavailableError(EnvironmentBuildError):
    """The chosen sandbox backend cannot run here; ``reasons`` maps backend -> why."""

    def __init__(
        self, message: str, *, reasons: dict[str, str] | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.reasons = dict(reasons or {})


class SubprocessError(EnvkitError):
    """A child process failed: carries argv, exit code and the tail of its output."""

    exit_code = EXIT_ENV_FAILED

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str],
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        # What the process was doing and why it failed, as data (an installer step and a
        # cause such as a hash mismatch), for code that words a hint on them.
        self.step: str | None = None
        self.cause: str | None = None
        super().__init__(message, detail=self._format_detail())

    def _format_detail(self) -> str:
        parts = [f"command: {' '.join(self.argv)}", f"exit code: {self.returncode}"]
        if self.stdout.strip():
            parts.append("stdout (tail):\n" + tail(self.stdout))
        if self.stderr.strip():
            parts.append("stderr (tail):\n" + tail(self.stderr))
        return "\n".join(parts)


def tail(text: str, lines: int = 30) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --- signatures and serving input (appended with the signature work, issue 6) -------------------


class SignatureError(UsageError, ValueError):
    """A schema or signature cannot be built: unsupported data, or an invalid specification."""


class ServingInputError(UsageError):
    """A scoring payload cannot be read: malformed JSON/CSV, unknown or missing format key."""


class MalformedPayloadError(ServingInputError):
    """A scoring payload that is not valid JSON at all (MLflow's MALFORMED_REQUEST)."""


# --- untrusted pickles (issue 13) ---------------------------------------------------------------


class UnsafeModelError(ModelFailedError):
    """A pickle of the model references a global that can run code while it is loaded
    (``os.system``, ``builtins.eval``...); ``path`` names the file, ``globals`` what it calls."""

    def __init__(
        self,
        message: str,
        *,
        path: str,
        globals: Sequence[str],
        detail: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.path = path
        self.globals = list(globals)
