"""envkit: package ML models in the MLflow Models format and prove their environments rebuild.

The public API is imported lazily so that ``import envkit`` stays fast: submodules such as
``envkit.pyfunc`` and ``envkit.sklearn`` load only when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from envkit._version import __version__

if TYPE_CHECKING:
    from envkit import models, pyfunc, sklearn
    from envkit.models.tracking import active_run, end_run, set_tracking_dir, start_run
    from envkit.sandbox.validate import ValidationReport, validate

__all__ = [
    "ValidationReport",
    "__version__",
    "active_run",
    "end_run",
    "models",
    "pyfunc",
    "set_tracking_dir",
    "sklearn",
    "start_run",
    "validate",
]

_LAZY_ATTRIBUTES = {
    "start_run": "envkit.models.tracking",
    "end_run": "envkit.models.tracking",
    "active_run": "envkit.models.tracking",
    "set_tracking_dir": "envkit.models.tracking",
    "validate": "envkit.sandbox.validate",
    "ValidationReport": "envkit.sandbox.validate",
}
_LAZY_SUBMODULES = {"models", "pyfunc", "sklearn", "deps", "sandbox", "serving", "errors"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"envkit.{name}")
    module = _LAZY_ATTRIBUTES.get(name)
    if module is None:
        raise AttributeError(f"module 'envkit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _LAZY_SUBMODULES)
