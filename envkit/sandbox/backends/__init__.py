"""Sandbox backends, by name: built-ins plus the ``envkit.backends`` entry-point group.

A backend is registered as ``name = "package.module:Class"``; the class is imported only
when the backend is asked for (``docker`` imports the docker SDK, the ``envkit[docker]``
extra, only when it is used). Third parties register theirs in their ``pyproject.toml``::

    [project.entry-points."envkit.backends"]
    mybackend = "mypackage.envkit_backend:MyBackend"
"""

from __future__ import annotations

import importlib
import logging
import sys

from envkit.errors import BackendUnavailableError, UsageError
from envkit.sandbox.backends.base import Backend, SandboxBackend

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "envkit.backends"

# The order is the order ``--env-manager auto`` tries them in. The same as the entry points in
# envkit's pyproject.toml, so that they are found without installed metadata, or with the
# metadata of an older install (an editable one keeps the entry points it was installed with).
# ``docker`` lives in the layer above the sandbox (its package imports the sandbox, never the
# reverse): it is named here as an entry point names it, and imported only when asked for.
BUILTIN_BACKENDS: dict[str, str] = {
    "uv": "envkit.sandbox.backends.uv:UvBackend",
    "virtualenv": "envkit.sandbox.backends.virtualenv:VirtualenvBackend",
    "conda": "envkit.sandbox.backends.conda:CondaBackend",
    "docker": "envkit.docker.backend:DockerBackend",
    "local": "envkit.sandbox.backends.local:LocalBackend",
}
# ``auto`` never picks these: ``local`` is not isolated, ``docker`` is asked for explicitly.
NOT_AUTOMATIC = ("local", "docker")
DEFAULT_BACKEND = "uv"


def registered_backends() -> dict[str, str]:
    """Backend name -> ``module:attribute``: built-ins, then entry points (which may override
    a built-in name only where the built-in module does not exist, such as ``docker``)."""
    from importlib import metadata

    result = dict(BUILTIN_BACKENDS)
    if sys.version_info >= (3, 10):
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    else:
        entry_points = list(metadata.entry_points().get(ENTRY_POINT_GROUP, []))
    for entry_point in entry_points:
        if entry_point.name in BUILTIN_BACKENDS and entry_point.value == result[entry_point.name]:
            continue
        if entry_point.name in BUILTIN_BACKENDS and _importable(BUILTIN_BACKENDS[entry_point.name]):
            logger.debug("ignoring entry point %s: a built-in backend has that name", entry_point)
            continue
        result[entry_point.name] = entry_point.value
    return result


def _importable(target: str) -> bool:
    import importlib.util

    module = target.split(":", 1)[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class _Missing(Backend):
    """Stands in for a registered backend whose code cannot be imported."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name  # type: ignore[misc]
        self.reason = reason

    def unavailable_reason(self) -> str:
        return self.reason


def load_backend(name: str) -> SandboxBackend:
    """An instance of backend ``name``; an unavailable one still answers its reason."""
    registry = registered_backends()
    target = registry.get(name)
    if target is None:
        raise UsageError(
            f"unknown environment manager {name!r}; choose one of: auto, {', '.join(registry)}"
        )
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attribute)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return _Missing(name, f"its module {module_name} is not part of this installation")
        return _Missing(name, f"importing {target} failed: {exc}")
    except (ImportError, AttributeError) as exc:
        return _Missing(name, f"importing {target} failed: {exc}")
    try:
        backend = cls()
    except Exception as exc:
        return _Missing(name, f"{target} could not be created: {exc}")
    if not isinstance(backend, SandboxBackend):
        missing = [m for m in _PROTOCOL_MEMBERS if not hasattr(backend, m)]
        return _Missing(
            name,
            f"{target} is not an envkit backend (it lacks {', '.join(missing)}; subclass "
            "envkit.sandbox.backends.base.Backend)",
        )
    return backend


# What a registered backend must have (SandboxBackend's members), named when one lacks some.
_PROTOCOL_MEMBERS = (
    "name", "description", "cacheable", "isolated", "options", "available", "configure",
    "describe", "choose_python", "create", "open", "check", "run", "killed_hint",
)  # fmt: skip


def backend_reasons() -> dict[str, str | None]:
    """Every registered backend and why it cannot run here (None when it can)."""
    return {name: load_backend(name).available().reason for name in registered_backends()}


def choose_backend(name: str | None) -> tuple[SandboxBackend, str | None]:
    """The backend for ``--env-manager NAME`` and a note saying how ``auto`` chose it.

    Raises :class:`BackendUnavailableError` listing the reason(s) when nothing can run.
    """
    name = name or DEFAULT_BACKEND
    if name != "auto":
        backend = load_backend(name)
        reason = backend.available().reason
        if reason is not None:
            raise BackendUnavailableError(
                f"the {name} environment manager cannot run here: {reason}; choose another "
                "with --env-manager (auto picks the first that can run)",
                reasons={name: reason},
            )
        return backend, None
    reasons: dict[str, str] = {}
    for candidate in registered_backends():
        if candidate in NOT_AUTOMATIC:
            continue
        backend = load_backend(candidate)
        reason = backend.available().reason
        if reason is None:
            skipped = "; ".join(f"{n}: {r}" for n, r in reasons.items())
            note = f"--env-manager auto chose {candidate}" + (
                f" (skipped {skipped})" if skipped else ""
            )
            return backend, note
        reasons[candidate] = reason
    listing = "; ".join(f"{n}: {r}" for n, r in reasons.items())
    raise BackendUnavailableError(
        f"no environment manager can run here ({listing}); install uv (pip install uv)",
        reasons=reasons,
    )
