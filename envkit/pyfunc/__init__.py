"""The ``python_function`` flavor: custom models, and loading any model as a pyfunc.

import envkit.pyfunc

class AddN(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input + context.model_config["n"]

envkit.pyfunc.save_model("add_n", python_model=AddN(), model_config={"n": 1})
model = envkit.pyfunc.load_model("add_n")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from envkit.pyfunc.loading import FLAVOR_NAME, ROW_INDEPENDENT, PyFuncModel, load_model
from envkit.pyfunc.model import MODEL_CONFIG, PythonModel, PythonModelContext

# The MLmodel keys MLflow users write (mlflow.pyfunc's constants, with MLflow's values), e.g.
# ``model_info.flavors[envkit.pyfunc.FLAVOR_NAME][envkit.pyfunc.MODEL_CONFIG]``.
MAIN = "loader_module"
CODE = "code"
DATA = "data"
ENV = "env"
PY_VERSION = "python_version"

__all__ = [
    "CODE",
    "DATA",
    "ENV",
    "FLAVOR_NAME",
    "MAIN",
    "MODEL_CONFIG",
    "PY_VERSION",
    "PyFuncModel",
    "PythonModel",
    "PythonModelContext",
    "get_model_dependencies",
    "load_model",
    "log_model",
    "save_model",
    "spark_udf",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _writer(
    python_model: Any,
    artifacts: Mapping[str, str | os.PathLike[str]] | None,
    model_config: dict[str, Any] | None,
    streamable: bool | None,
    row_independent: bool | None = None,
) -> Any:
    from envkit._fs import copy_into
    from envkit._version import __version__
    from envkit.deps.envfiles import pin_installed
    from envkit.models.model import Model
    from envkit.pyfunc import model as pm
    from envkit.pyfunc.save import FlavorWriter

    instance, code_file = _python_model_instance(python_model, model_config)
    sources = _artifact_sources(artifacts)

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        nonlocal instance
        if code_file is not None:
            # Executed once now, to check that the file defines a model: with the model's
            # code_paths on sys.path, as a load runs it.
            from envkit.pyfunc.code import load_model_from_code

            instance = pm.as_python_model(load_model_from_code(code_file, model_config))
            writer.python_model = instance
        conf: dict[str, Any] = {
            "loader_module": pm.LOADER_MODULE,
            "code": code_dir,
            "streamable": streamable if streamable is not None else pm.is_streamable(instance),
        }
        if code_file is not None:
            copy_into(code_file, staging)
            conf[pm.MODEL_CODE_PATH] = code_file.name
        else:
            conf.update(_pickle_python_model(instance, staging))
        if row_independent is not None:
            conf[ROW_INDEPENDENT] = bool(row_independent)
        if model_config:
            conf[pm.MODEL_CONFIG] = dict(model_config)
        if sources:
            conf[pm.CONFIG_KEY_ARTIFACTS] = _copy_artifacts(sources, staging)
        model.add_flavor(FLAVOR_NAME, **conf)

    def default_requirements() -> list[str]:
        reqs = [f"envkit=={__version__}"]
        if code_file is None:
            reqs.append(pin_installed("cloudpickle"))
        return reqs

    def pyfunc_impl(staging: Path) -> Any:
        # The in-memory model, with the context a load would give it (artifacts in the model).
        artifacts = {
            name: str(staging / pm.ARTIFACTS_DIR / src.name) for name, src in sources.items()
        }
        context = pm.PythonModelContext(artifacts=artifacts, model_config=model_config)
        instance.load_context(context)
        return pm._PythonModelPyfuncWrapper(instance, context)

    writer = FlavorWriter(
        write=write,
        default_requirements=default_requirements,
        python_model=instance,
        pyfunc_impl=pyfunc_impl,
    )
    return writer


def _python_model_instance(
    python_model: Any, model_config: dict[str, Any] | None
) -> tuple[Any, Path | None]:
    """The PythonModel to save, and the ``.py`` file it comes from (models from code: no
    instance yet, the file runs when the model is written, its code_paths in place)."""
    from envkit.errors import UsageError
    from envkit.pyfunc import model as pm

    if isinstance(python_model, (str, os.PathLike)):
        code_file = Path(python_model)
        if code_file.suffix != ".py" or not code_file.is_file():
            raise UsageError(
                f"python_model={python_model!r}: a path must name an existing .py file that "
                "calls envkit.models.set_model(...)"
            )
        return None, code_file
    if python_model is None:
        raise UsageError("save_model needs python_model: a PythonModel, a callable or a .py path")
    return pm.as_python_model(python_model), None


def _artifact_sources(
    artifacts: Mapping[str, str | os.PathLike[str]] | None,
) -> dict[str, Path]:
    """Artifact name -> local file, checked to exist and to have distinct file names."""
    from envkit.errors import UsageError

    sources = {
        name: Path(os.fspath(src).removeprefix("file://"))
        for name, src in (artifacts or {}).items()
    }
    for name, src in sources.items():
        if not src.exists():
            raise UsageError(f"artifact {name!r}: {src} does not exist")
    basenames = [src.name for src in sources.values()]
    if len(set(basenames)) != len(basenames):
        raise UsageError("artifacts must have distinct file names")
    return sources


def _pickle_python_model(instance: Any, staging: Path) -> dict[str, Any]:
    """Cloudpickle ``instance`` into the model; the flavor keys that name the file."""
    import pickle

    import cloudpickle

    from envkit.errors import UsageError
    from envkit.pyfunc import model as pm

    with open(staging / pm.PYTHON_MODEL_FILE, "wb") as handle:
        try:
            cloudpickle.dump(instance, handle)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise UsageError(
                f"the python_model cannot be pickled ({exc}); make it picklable, or "
                "save it as code: python_model='my_model.py' with "
                "envkit.models.set_model(...) in that file"
            ) from exc
    return {
        pm.CONFIG_KEY_PYTHON_MODEL: pm.PYTHON_MODEL_FILE,
        pm.CONFIG_KEY_CLOUDPICKLE_VERSION: cloudpickle.__version__,
    }


def _copy_artifacts(sources: dict[str, Path], staging: Path) -> dict[str, dict[str, str]]:
    """Copy each artifact into the model; name -> where it is now and where it came from."""
    from envkit._fs import copy_into
    from envkit.pyfunc import model as pm

    recorded = {}
    for name, src in sources.items():
        copy_into(src, staging / pm.ARTIFACTS_DIR)
        recorded[name] = {
            pm.CONFIG_KEY_ARTIFACT_RELATIVE_PATH: f"{pm.ARTIFACTS_DIR}/{src.name}",
            pm.CONFIG_KEY_ARTIFACT_URI: os.fspath(src),
        }
    return recorded


def save_model(
    path: str | os.PathLike[str],
    python_model: Any = None,
    *,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    model_config: dict[str, Any] | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: RequirementsArg = None,
    extra_pip_requirements: RequirementsArg = None,
    metadata: dict[str, Any] | None = None,
    streamable: bool | None = None,
    row_independent: bool | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    conda_env: dict[str, Any] | str | os.PathLike[str] | None = None,
    envkit_model: Any = None,
) -> Any:
    """Save a custom model as an MLflow Model directory at ``path``; returns its ``Model``.

    ``python_model`` is a :class:`PythonModel`, a callable, or the path of a ``.py`` file that
    calls ``envkit.models.set_model(...)`` (models from code: stored as code, never pickled).
    ``artifacts`` (name -> local path) are copied into the model and handed to the model as
    ``context.artifacts``. ``code_paths`` are copied and put on ``sys.path`` at load.
    ``row_independent=True`` declares that each row's prediction depends on that row alone,
    so that ``envkit serve --max-batch-size`` may predict rows of concurrent requests together
    (written as the python_function key ``row_independent``).
    """
    from envkit.pyfunc.save import save_model_directory

    return save_model_directory(
        path,
        _writer(python_model, artifacts, model_config, streamable, row_independent),
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
    artifact_path: str | None = None,
    python_model: Any = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save a custom model into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    import sys

    from envkit.models.model import Model

    return Model.log(
        artifact_path, sys.modules[__name__], name=name, python_model=python_model, **kwargs
    )


def get_model_dependencies(model_uri: str | os.PathLike[str], format: str = "pip") -> str:
    """Path of the model's ``requirements.txt`` (``format="pip"``) or ``conda.yaml``."""
    from envkit.deps.envfiles import CONDA_ENV_FILE, REQUIREMENTS_FILE
    from envkit.errors import ModelFormatError, UsageError
    from envkit.models.uri import resolve_model_uri

    names = {"pip": REQUIREMENTS_FILE, "conda": CONDA_ENV_FILE}
    if format not in names:
        raise UsageError(f"format must be 'pip' or 'conda', not {format!r}")
    path = resolve_model_uri(model_uri) / names[format]
    if not path.is_file():
        raise ModelFormatError(f"the model has no {names[format]}")
    return str(path)


def spark_udf(
    spark: Any,
    model_uri: str | os.PathLike[str],
    result_type: Any = None,
    env_manager: str = "local",
    params: dict[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Any:
    """A Spark pandas UDF predicting with the model at ``model_uri``, as MLflow's does:
    ``env_manager="local"`` loads the model in the Spark workers' interpreter; ``"uv"``,
    ``"virtualenv"`` or ``"conda"`` run it in its own rebuilt environment on each executor.
    See :func:`envkit.integrations.spark.spark_udf`."""
    import importlib

    # By name: the implementation provisions environments (envkit.sandbox, a layer above).
    spark_module = importlib.import_module("envkit.integrations.spark")
    return spark_module.spark_udf(
        spark,
        model_uri,
        result_type=result_type,
        env_manager=env_manager,
        params=params,
        extra_env=extra_env,
    )


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> Any:
    """Loader contract for models whose loader_module is ``envkit.pyfunc``."""
    from envkit.pyfunc.model import _load_pyfunc as load

    return load(path, model_config)
