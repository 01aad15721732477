"""``environment_variables.txt``: names (never values) of variables a model reads at inference.

Only names that contain one of MLflow's allowlisted substrings are recorded, with MLflow's
header. ``ENVKIT_RECORD_ENV_VARS_IN_MODEL_LOGGING=false`` (or MLflow's
``MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING=false``) turns recording off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from envkit.deps.envfiles import ENV_VARS_FILE

# MLflow's RECORD_ENV_VAR_ALLOWLIST: a name is recorded when it contains any of these.
RECORD_ENV_VAR_ALLOWLIST = frozenset(
    {
        # api key related
        "API_KEY",  # e.g. OPENAI_API_KEY
        "API_TOKEN",
        # databricks auth related
        "DATABRICKS_HOST",
        "DATABRICKS_USERNAME",
        "DATABRICKS_PASSWORD",
        "DATABRICKS_TOKEN",
        "DATABRICKS_INSECURE",
        "DATABRICKS_CLIENT_ID",
        "DATABRICKS_CLIENT_SECRET",
        "_DATABRICKS_WORKSPACE_HOST",
        "_DATABRICKS_WORKSPACE_ID",
    }
)

# Substrings of variable names whose values are redacted from messages envkit shows or records.


def redact_values(text: str, names: Iterable[str] = ()) -> str:
    """``text`` with the values of this process's environment variables (and of ``names``)
    and URL passwords replaced by ``***`` (:mod:`envkit._redact`): a model's error message may
    quote the API key it read."""
    from envkit._redact import redact

    return redact(text, names)


ENV_VAR_FILE_HEADER = (
    "# This file records environment variable names that are used during model inference.\n"
    "# They might need to be set when creating a serving endpoint from this model.\n"
    "# Note: it is not guaranteed that all environment variables listed here are required\n"
)

RECORD_SWITCHES = (
    "ENVKIT_RECORD_ENV_VARS_IN_MODEL_LOGGING",
    "MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING",
)
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def boolean_env(name: str, default: bool) -> bool:
    """The boolean environment variable ``name`` (true/false, 1/0, yes/no; any case), or
    ``default`` when it is unset or empty.

    Raises :class:`~envkit.errors.UsageError` for any other value, as MLflow does (the message
    names the variable, never its value).
    """
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    from envkit.errors import UsageError

    raise UsageError(f"{name} must be true or false (or 1/0, yes/no); unset it for the default")


def recording_enabled() -> bool:
    """False when either switch variable is false (both default to true)."""
    return all([boolean_env(name, True) for name in RECORD_SWITCHES])


def allowlisted(names: Iterable[str]) -> list[str]:
    """The sorted names that contain an allowlisted substring."""
    return sorted(
        {name for name in names if any(token in name for token in RECORD_ENV_VAR_ALLOWLIST)}
    )


def format_env_vars_file(names: Iterable[str]) -> str:
    """The file content, exactly as MLflow writes it: header, one name per line."""
    return ENV_VAR_FILE_HEADER + "\n".join(names) + "\n"


def write_env_vars_file(model_dir: str | os.PathLike[str], names: list[str]) -> None:
    """Write ``environment_variables.txt`` (or remove a stale one when ``names`` is empty)."""
    path = Path(model_dir) / ENV_VARS_FILE
    if names:
        path.write_text(format_env_vars_file(names), encoding="utf-8")
    elif path.exists():
        path.unlink()


def read_env_vars_file(model_dir: str | os.PathLike[str]) -> list[str]:
    """Names recorded in a model's ``environment_variables.txt`` (empty when absent)."""
    path = Path(model_dir) / ENV_VARS_FILE
    if not path.is_file():
        return []
    import re

    from envkit.errors import ModelFormatError

    names = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        # The names go into Dockerfiles, labels and reports: a name, nothing else.
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ModelFormatError(
                f"{ENV_VARS_FILE}:{number}: {name[:60]!r} is not an environment variable name"
            )
        names.append(name)
    return names
