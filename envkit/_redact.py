"""Redaction of what envkit shows: no value of the process environment and no URL password
reaches a terminal, a report, a log line or an HTTP response.

Two rules, applied to every text envkit outputs (the CLI's stdout and stderr, ``--output``
files, reports, the scoring server's log and error bodies):

- ``scheme://user:password@`` in a URL becomes ``scheme://***@`` (``${VARIABLE}`` placeholders,
  which the installer expands, are kept);
- the value of every environment variable longer than 6 characters becomes ``***``, whatever
  the variable is called (``DATABASE_URL`` holds a password as surely as ``API_KEY`` does),
  except values that are file system paths or lists of them (``PATH``, ``HOME``...) and a few
  settings that are never secret (the terminal, the locale, the shell).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Redactor", "redact", "redact_data"]

MIN_SECRET_LENGTH = 7  # "longer than 6 characters"
MASK = "***"
_NOT_SECRET_NAMES = frozenset({"TERM", "SHELL", "LANG", "LANGUAGE", "TZ", "HOSTNAME", "USER"})
_URL_USERINFO = re.compile(r"(?<=://)([^/@\s]+)@")
_PLACEHOLDERS = re.compile(r"\$\{[A-Za-z0-9_]+\}|:")


_LOCAL_URL = re.compile(r"^(?:file|unix)://(?=/)")


def _looks_like_paths(value: str) -> bool:
    """An absolute path, a ``:``-separated list of them, or a ``file://``/``unix://`` URL of
    one (``DOCKER_HOST``, ``PIP_FIND_LINKS``); never anything with credentials."""
    if "@" in value:
        return False
    value = _LOCAL_URL.sub("", value)
    if "://" in value:
        return False
    parts = [p for p in value.split(os.pathsep) if p]
    return bool(parts) and all(p.startswith(("/", "~")) and " " not in p for p in parts)


def _is_secret_candidate(name: str, value: str) -> bool:
    if len(value) < MIN_SECRET_LENGTH or name in _NOT_SECRET_NAMES:
        return False
    if name.startswith("LC_"):
        return False
    return not _looks_like_paths(value)


class Redactor:
    """Replaces the secrets of one environment (taken once: building it scans the variables)."""

    def __init__(self, environ: Mapping[str, str] | None = None, names: Iterable[str] = ()):
        environ = os.environ if environ is None else environ
        extra = set(names)
        values = {
            value
            for name, value in environ.items()
            if _is_secret_candidate(name, value) or (name in extra and len(value) >= 4)
        }
        # Longer first: a value that contains another is replaced whole.
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        text = _URL_USERINFO.sub(_mask_userinfo, text)
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group(1)
    if not _PLACEHOLDERS.sub("", userinfo):
        return match.group(0)  # only ${VARIABLES}: the installer expands them, nothing leaks
    return f"{MASK}@"


def redact(text: str, names: Iterable[str] = ()) -> str:
    """``text`` without URL passwords and without the values of this process's environment
    variables (see the module doc); ``names`` are variables to redact whatever their value."""
    return Redactor(names=names)(text)


def redact_data(data: Any, redactor: Redactor | None = None) -> Any:
    """``data`` (JSON-like: dicts, lists, strings) with every string redacted."""
    redactor = redactor or Redactor()
    if isinstance(data, str):
        return redactor(data)
    if isinstance(data, dict):
        return {key: redact_data(value, redactor) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(value, redactor) for value in data]
    return data
