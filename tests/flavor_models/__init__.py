"""One tiny model per flavor, saved by envkit and by MLflow, for tests and benchmarks.

Each module ``tests/flavor_models/<flavor>.py`` (the file named after the flavor) defines:

- ``save_envkit(path)``: trains a tiny model on a few rows and saves it with envkit at
  ``path``, with an input example;
- ``MLFLOW_SAVE``: a Python script; run in the MLflow oracle's virtualenv with the output path
  as ``sys.argv[1]``, it saves the same kind of model with ``mlflow.<flavor>``;
- optionally ``MLFLOW_LIBRARIES``: the libraries (at this interpreter's versions) that
  ``MLFLOW_SAVE`` needs and the oracle's virtualenv lacks; MLflow then runs from a virtualenv of
  its own with them (``tests/conftest.py::mlflow_venv_with``).

``benchmarks/validate.py`` runs every module found here (:func:`flavor_modules`).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def flavor_names() -> list[str]:
    """The flavors that have a module here, sorted."""
    return sorted(info.name for info in pkgutil.iter_modules([str(HERE)]) if not info.ispkg)


def flavor_modules(names: list[str] | None = None) -> dict[str, ModuleType]:
    """Flavor name -> its module (``names``: a subset; an unknown name raises KeyError)."""
    known = flavor_names()
    wanted = names or known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise KeyError(
            f"no tests/flavor_models module for {', '.join(unknown)} ({', '.join(known)})"
        )
    return {name: importlib.import_module(f"{__name__}.{name}") for name in wanted}
