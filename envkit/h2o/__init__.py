"""The ``h2o`` flavor: an H2O-3 model, file-compatible with ``mlflow.h2o``.

    import envkit.h2o

    envkit.h2o.save_model(glm, "h2o_model", settings={"init": {"max_mem_size": "1G"}},
                          input_example=df.head(3))
    model = envkit.h2o.load_model("h2o_model")         # the H2O model object
    pyfunc = envkit.pyfunc.load_model("h2o_model")     # a pandas DataFrame in, one out

The layout is MLflow's: the model as H2O writes it (``h2o.download_model``) in ``model.h2o/``,
beside ``h2o.yaml``, whose ``model_file`` names it and whose ``init`` mapping holds the
arguments that ``h2o.init()`` gets at load; the ``h2o`` flavor section has ``h2o_version`` and
``data`` (``model.h2o``). Loading joins the H2O cluster this process is connected to, or calls
``h2o.init(**init)`` (which joins a cluster at its address or starts a local one), then uploads
the model into it. The pyfunc scores pandas DataFrames only, and returns H2O's prediction frame
as a DataFrame with the input's index.

H2O runs on a JVM: the model records the Java major version of the host's ``java`` it was saved
with (``java_major_version`` in the flavor section), and ``envkit validate`` checks that a JVM
of at least that version is there before it builds anything (exit 3 otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "h2o"
LOADER_MODULE = "envkit.h2o"
MODEL_DATA = "model.h2o"
SETTINGS_FILE = "h2o.yaml"
JAVA_KEY = "java_major_version"

__all__ = ["FLAVOR_NAME", "load_model", "log_model", "save_model"]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _h2o() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("h2o", flavor=FLAVOR_NAME)


def _checked_settings(settings: Any) -> dict[str, Any]:
    from envkit.errors import UsageError

    if settings is None:
        return {}
    if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
        raise UsageError(f"settings must be a mapping of names, not {type(settings).__name__}")
    init = settings.get("init", {})
    if not isinstance(init, dict) or not all(isinstance(k, str) for k in init):
        raise UsageError(
            "settings['init'] must be a mapping of h2o.init() keyword arguments, "
            f"not {type(init).__name__}"
        )
    return dict(settings)


def _host_java_major() -> int | None:
    """The major version of the ``java`` that ``h2o.init()`` would start here."""
    from envkit._java import installed_java_major, java_executable

    java = java_executable()
    return installed_java_major(java) if java else None


def save_model(
    h2o_model: Any,
    path: str | os.PathLike[str],
    *,
    settings: dict[str, Any] | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: RequirementsArg = None,
    extra_pip_requirements: RequirementsArg = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    conda_env: dict[str, Any] | str | os.PathLike[str] | None = None,
    envkit_model: Any = None,
) -> Any:
    """Save an H2O model (an ``H2OEstimator`` of the cluster this process is connected to) as
    an MLflow Model directory at ``path``.

    ``settings`` is written to ``model.h2o/h2o.yaml``; its ``init`` mapping holds the keyword
    arguments of the ``h2o.init()`` that loading calls (``{"max_mem_size": "1G"}``...).
    Requirements: h2o and pandas, pinned to the versions installed here.
    """
    import yaml

    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.flavor_kit import LibraryRequirements
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    h2o = _h2o()
    from h2o.estimators.estimator_base import H2OEstimator

    if not isinstance(h2o_model, H2OEstimator):
        raise UsageError(f"envkit.h2o saves an H2O model, not a {type(h2o_model).__name__}")
    conf = _checked_settings(settings)
    java = _host_java_major()

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        data_dir = staging / MODEL_DATA
        data_dir.mkdir()
        saved = h2o.download_model(model=h2o_model, path=str(data_dir))
        # MLflow also writes full_file and model_dir, absolute paths of the directory it saved
        # in (here: a staging directory gone after the save); only model_file and init are read.
        written = {**conf, "model_file": os.path.basename(saved)}
        (data_dir / SETTINGS_FILE).write_text(yaml.safe_dump(written), encoding="utf-8")
        model.add_flavor(
            "python_function", loader_module=LOADER_MODULE, data=MODEL_DATA, code=code_dir
        )
        section: dict[str, Any] = {"h2o_version": h2o.__version__, "data": MODEL_DATA}
        if java is not None:
            section[JAVA_KEY] = java
        model.add_flavor(FLAVOR_NAME, code=code_dir, **section)

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=LibraryRequirements(("h2o", "pandas")).with_envkit,
            pyfunc_impl=lambda staging: _H2OModelWrapper(h2o_model),
        ),
        envkit_model=envkit_model,
        code_paths=code_paths,
        input_example=input_example,
        signature=signature,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        overwrite=overwrite,
        strict=strict,
        conda_env=conda_env,
    )


def log_model(
    h2o_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``h2o_model`` into the active run (:func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, h2o_model=h2o_model, **kwargs)


def load_model(model_uri: str | os.PathLike[str]) -> Any:
    """Load the H2O model object of the model at ``model_uri`` into the H2O cluster this process
    is connected to (or the one ``h2o.init(**init)`` of its ``h2o.yaml`` joins or starts)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    _h2o()
    opened = open_flavor(model_uri, FLAVOR_NAME)
    # MLflow <= 0.8 wrote no ``data``: the directory is model.h2o then too.
    return _load(opened.file("data", MODEL_DATA))


def _read_settings(data_dir: Path) -> dict[str, Any]:
    import yaml

    from envkit.errors import ModelFormatError

    settings_path = data_dir / SETTINGS_FILE
    try:
        settings = yaml.safe_load(settings_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelFormatError(f"cannot read the h2o model's {settings_path}: {exc}") from exc
    if not isinstance(settings, dict) or not isinstance(settings.get("model_file"), str):
        raise ModelFormatError(f"{settings_path} names no model_file")
    if not isinstance(settings.get("init", {}), dict):
        raise ModelFormatError(f"the init of {settings_path} is not a mapping")
    return settings


def _connected(h2o: Any) -> bool:
    connection = h2o.connection()
    return connection is not None and bool(getattr(connection, "connected", False))


def _load(data_dir: Path) -> Any:
    """Join (or start) the cluster and upload the model of ``data_dir`` (``model.h2o``)."""
    from envkit._fs import resolve_inside

    h2o = _h2o()
    settings = _read_settings(data_dir)
    if not _connected(h2o):
        h2o.init(**{"verbose": False, **settings.get("init", {})})
    h2o.no_progress()
    return h2o.upload_model(str(resolve_inside(data_dir, settings["model_file"])))


class _H2OModelWrapper:
    """pyfunc adapter (MLflow's): a pandas DataFrame in, H2O's prediction frame out as a
    DataFrame with the input's index."""

    def __init__(self, h2o_model: Any) -> None:
        self.h2o_model = h2o_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import warnings

        import pandas as pd

        from envkit.errors import SchemaEnforcementError

        h2o = _h2o()
        if not isinstance(data, pd.DataFrame):
            raise SchemaEnforcementError(
                f"the h2o flavor scores a pandas DataFrame only, not a {type(data).__name__}"
            )
        from h2o.exceptions import H2ODependencyWarning

        frame = self.h2o_model.predict(h2o.H2OFrame(data))
        with warnings.catch_warnings():  # (single-threaded conversion: what a few rows need)
            warnings.simplefilter("ignore", H2ODependencyWarning)
            predicted = frame.as_data_frame()
        predicted.index = data.index
        return predicted

    def get_raw_model(self) -> Any:
        return self.h2o_model


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _H2OModelWrapper:
    """Loader contract (also for models MLflow wrote with ``mlflow.h2o``): ``path`` is the
    model's ``model.h2o`` directory (MLflow's ``data``) or the model directory."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    _h2o()
    target = Path(path)
    if (target / "MLmodel").is_file():
        opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
        target = opened.file_named(opened.conf.get("data", MODEL_DATA))
    return _H2OModelWrapper(_load(target))
