"""The ``prophet`` flavor, file-compatible with ``mlflow.prophet``.

    import envkit.prophet

    model = Prophet().fit(history)                   # columns ds, y
    envkit.prophet.save_model(model, "forecast", input_example=model.make_future_dataframe(3))
    model = envkit.prophet.load_model("forecast")    # the Prophet object
    envkit.pyfunc.load_model("forecast").predict(pd.DataFrame({"ds": [...]}))  # forecast frame

The model is written as MLflow writes it: ``prophet.serialize.model_to_json``, stored as a JSON
string in ``model.pr`` (no pickle). The flavor section has MLflow's keys (``prophet_version``,
``model_type``, ``data``, ``code``). The pyfunc ``predict`` is ``Prophet.predict``: a DataFrame
with a ``ds`` column (and the extra regressors the model was fit with) in, the forecast
DataFrame (``ds``, ``yhat``, ``trend``... ) out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from envkit.pyfunc.flavor_kit import LibraryRequirements

FLAVOR_NAME = "prophet"
LOADER_MODULE = "envkit.prophet"
_MODEL_BINARY_KEY = "data"
_MODEL_BINARY_FILE_NAME = "model.pr"
_MODEL_TYPE_KEY = "model_type"

__all__ = [
    "FLAVOR_NAME",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _prophet() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("prophet", flavor=FLAVOR_NAME)


_REQUIREMENTS = LibraryRequirements(("prophet",))


def get_default_pip_requirements() -> list[str]:
    """What the model needs besides envkit, as MLflow's: prophet, pinned to this version."""
    return _REQUIREMENTS.pip()


def get_default_conda_env() -> dict[str, Any]:
    """The ``conda.yaml`` mapping of a model of this flavor: this Python, envkit and
    :func:`get_default_pip_requirements`."""
    return _REQUIREMENTS.conda_env()


def save_model(
    pr_model: Any,
    path: str | os.PathLike[str],
    *,
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
    """Save a fitted Prophet model as an MLflow Model directory at ``path`` (JSON, no pickle)."""
    prophet = _prophet()
    from prophet.serialize import model_to_json

    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if not isinstance(pr_model, prophet.Prophet):
        raise UsageError(f"a prophet model is a fitted Prophet, not a {type(pr_model).__name__}")
    try:
        serialized = model_to_json(pr_model)
    except ValueError as exc:  # "This can only be used to serialize models that have been fit"
        raise UsageError(f"the Prophet model cannot be saved: {exc}") from exc

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        with open(staging / _MODEL_BINARY_FILE_NAME, "w", encoding="utf-8") as handle:
            json.dump(serialized, handle)
        model.add_flavor(
            "python_function",
            loader_module=LOADER_MODULE,
            data=_MODEL_BINARY_FILE_NAME,
            **({"code": code_dir} if code_dir else {}),
        )
        model.add_flavor(
            FLAVOR_NAME,
            prophet_version=prophet.__version__,
            code=code_dir,
            **{
                _MODEL_TYPE_KEY: type(pr_model).__name__,
                _MODEL_BINARY_KEY: _MODEL_BINARY_FILE_NAME,
            },
        )

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=_REQUIREMENTS.with_envkit,
            pyfunc_impl=lambda staging: _ProphetModelWrapper(pr_model),
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
    pr_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``pr_model`` into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, pr_model=pr_model, **kwargs)


def load_model(model_uri: str | os.PathLike[str]) -> Any:
    """Load the Prophet object of the model at ``model_uri``."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(model_uri, FLAVOR_NAME)
    return _load_file(opened.file(_MODEL_BINARY_KEY, _MODEL_BINARY_FILE_NAME))


def _load_file(path: Path) -> Any:
    _prophet()
    from prophet.serialize import model_from_json

    from envkit.models.serialization import load_model_file

    def read(handle: Any) -> Any:
        text = json.load(handle)
        # MLflow stores the JSON text as a JSON string; a plain JSON object is read too.
        return model_from_json(text if isinstance(text, str) else json.dumps(text))

    return load_model_file(path, read)


class _ProphetModelWrapper:
    """pyfunc adapter: ``predict(DataFrame with ds)`` is ``Prophet.predict``."""

    def __init__(self, pr_model: Any) -> None:
        self.pr_model = pr_model

    def get_raw_model(self) -> Any:
        return self.pr_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.pr_model.predict(data)


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _ProphetModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.prophet``)."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    target = Path(path)
    if not target.is_file():
        opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
        target = opened.file(_MODEL_BINARY_KEY, _MODEL_BINARY_FILE_NAME)
    return _ProphetModelWrapper(_load_file(target))
