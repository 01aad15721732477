"""What every library flavor (``envkit.sklearn``, ``envkit.xgboost``...) shares around
:func:`envkit.pyfunc.save.save_model_directory`: its library imported with a clear error when
missing, the model directory opened safely for ``load_model`` (URI resolved, paths kept inside,
pickles scanned, ``code/`` on ``sys.path``), the flavor section found for ``_load_pyfunc``, and
``log_model``.

A third-party flavor can use it too (README "Writing a flavor")::

    from envkit.pyfunc.flavor_kit import import_library, open_flavor, log_flavor_model
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "FlavorDirectory",
    "LibraryRequirements",
    "import_library",
    "log_flavor_model",
    "open_flavor",
    "pin_library",
    "pyfunc_flavor_directory",
    "with_envkit",
]


def import_library(module: str, distribution: str | None = None, *, flavor: str = "") -> ModuleType:
    """Import the flavor's library ``module``; when it is not installed, raise
    :class:`~envkit.errors.LoaderImportError` naming the distribution to install (exit 1 in a
    sandbox: the model's requirements miss it), never a bare traceback."""
    from envkit.errors import LoaderImportError

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        if missing != module and not module.startswith(missing + "."):
            raise  # the library is there; one of its own imports is not: its error says which
        package = distribution or module.split(".", 1)[0]
        who = f"the {flavor} flavor" if flavor else "this model"
        raise LoaderImportError(
            f"{who} needs the package {package!r}, which is not installed: "
            f"pip install {package} (or add it to the model's requirements)",
            module=missing,
        ) from exc


def pin_library(module: str, distribution: str) -> str:
    """The requirement ``name==version`` of the installed distribution that provides the import
    ``module``: ``distribution`` when it does, else the one that does (``xgboost-cpu`` provides
    ``xgboost``), so that a sandbox installs what the model was saved with."""
    from envkit.deps.distributions import canonical, current_index
    from envkit.deps.envfiles import pin_installed

    providers = current_index().top_level.get(module.split(".", 1)[0], [])
    if not providers or canonical(distribution) in providers:
        return pin_installed(distribution)
    return pin_installed(providers[0])


@dataclass(frozen=True)
class FlavorDirectory:
    """A model directory opened for one flavor: where it is and that flavor's MLmodel section."""

    path: Path
    conf: dict[str, Any]

    def file(self, key: str, default: str | None = None) -> Path:
        """The file (or directory) the section's ``key`` names, kept inside the model."""
        from envkit.errors import ModelFormatError

        relative = self.conf.get(key, default)
        if relative is None:
            raise ModelFormatError(f"the model's flavor section has no {key!r}")
        return self.file_named(relative)

    def file_named(self, relative: object) -> Path:
        """``relative`` (a path the MLmodel gives) inside the model directory, never outside."""
        from envkit._fs import resolve_inside

        return resolve_inside(self.path, str(relative))

    def pyfunc_conf(self) -> dict[str, Any]:
        """The model's ``python_function`` section."""
        from envkit.models.model import Model

        return Model.load(self.path).get_flavor("python_function")


def open_flavor(
    model_uri: str | os.PathLike[str],
    flavor_name: str,
    *,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> FlavorDirectory:
    """For a flavor's ``load_model``: resolve ``model_uri``, refuse paths leaving the model,
    scan its pickles (:mod:`envkit.models.scan`), put its ``code/`` on ``sys.path``, and return
    the ``flavor_name`` section (:class:`~envkit.errors.ModelFormatError` when it has none)."""
    from envkit._fs import check_tree_inside
    from envkit.models.model import Model
    from envkit.models.scan import ModelTrust, ensure_safe
    from envkit.models.uri import resolve_model_uri
    from envkit.pyfunc.loading import _add_code_to_path

    local = resolve_model_uri(model_uri)
    check_tree_inside(local)
    ensure_safe(local, ModelTrust.of(trust_model, trusted_types))
    conf = Model.load(local).get_flavor(flavor_name)
    _add_code_to_path(local, conf)
    return FlavorDirectory(local, conf)


def pyfunc_flavor_directory(path: str, flavor_name: str) -> FlavorDirectory:
    """For a flavor's ``_load_pyfunc(path)``: ``path`` is the model directory or, as MLflow
    passes it, the ``python_function`` section's ``model_path`` inside it. The section returned
    is ``flavor_name``'s (empty when the MLmodel has none); ``path`` is the model directory."""
    from envkit.models.model import Model

    target = Path(path)
    model_dir = target.parent if target.is_file() else target
    if not (model_dir / "MLmodel").is_file() and (model_dir.parent / "MLmodel").is_file():
        model_dir = model_dir.parent  # model_path named a directory inside the model
    model = Model.load(model_dir)
    return FlavorDirectory(model_dir, dict(model.flavors.get(flavor_name) or {}))


def log_flavor_model(
    module_name: str, artifact_path: str | None, name: str | None, **kwargs: Any
) -> Any:
    """``log_model`` of the flavor module ``module_name``: save into the active run (see
    :func:`envkit.start_run`) and return its ModelInfo."""
    from envkit.models.model import Model

    return Model.log(artifact_path, sys.modules[module_name], name=name, **kwargs)


def with_envkit(requirements: list[str]) -> list[str]:
    """``requirements`` after envkit pinned to this version: a model's requirements without
    capture (a flavor whose default requirements depend on the model: keras and its backend)."""
    from envkit._version import __version__

    return [f"envkit=={__version__}", *requirements]


@dataclass(frozen=True)
class LibraryRequirements:
    """A flavor's default environment: its libraries (distribution names) pinned to the
    versions installed here, as MLflow's ``get_default_pip_requirements()``; with envkit, what
    a save records when capture is off or fails; and the ``conda.yaml`` mapping of that."""

    distributions: tuple[str, ...]

    def pip(self) -> list[str]:
        """The libraries pinned to their installed versions (envkit is added by the save)."""
        from envkit.deps.envfiles import pin_installed

        return [pin_installed(name) for name in self.distributions]

    def with_envkit(self) -> list[str]:
        """:meth:`pip` and envkit: a model's requirements without capture."""
        return with_envkit(self.pip())

    def conda_env(self) -> dict[str, Any]:
        """The ``conda.yaml`` mapping: this Python, envkit and the libraries."""
        from envkit.deps.envfiles import conda_env_dict

        return conda_env_dict(self.with_envkit())
