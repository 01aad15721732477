"""envkit: package ML models in the MLflow Models format and prove their environments rebuild.

The public API is imported lazily so that ``import envkit`` stays fast: submodules such as
``envkit.pyfunc`` and ``envkit.sklearn`` load only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envkit._lazy import lazy_attributes
from envkit._version import __version__

if TYPE_CHECKING:
    from envkit import models, pyfunc, sklearn
    from envkit.models.tracking import active_run, end_run, set_tracking_dir, start_run
    from envkit.sandbox.matrix import MatrixReport, matrix
    from envkit.sandbox.validate import ValidationReport, validate

__all__ = [
    "MatrixReport",
    "ValidationReport",
    "__version__",
    "active_run",
    "end_run",
    "matrix",
    "models",
    "pyfunc",
    "set_tracking_dir",
    "sklearn",
    "start_run",
    "validate",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "start_run": "envkit.models.tracking",
        "end_run": "envkit.models.tracking",
        "active_run": "envkit.models.tracking",
        "set_tracking_dir": "envkit.models.tracking",
        "validate": "envkit.sandbox.validate",
        "ValidationReport": "envkit.sandbox.validate",
        "matrix": "envkit.sandbox.matrix",
        "MatrixReport": "envkit.sandbox.matrix",
    },
    submodules={"models", "pyfunc", "sklearn", "deps", "sandbox", "serving", "errors"},
)
