"""Custom Python models: :class:`PythonModel`, its context, and the ``envkit.pyfunc.model`` loader.

A ``python_function`` model written by :func:`envkit.pyfunc.save_model` names this module as
its ``loader_module``; :func:`_load_pyfunc` is the loader contract MLflow also uses.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from envkit._fs import resolve_inside
from envkit.errors import ModelFormatError, UsageError

LOADER_MODULE = "envkit.pyfunc.model"
CONFIG_KEY_PYTHON_MODEL = "python_model"
CONFIG_KEY_CLOUDPICKLE_VERSION = "cloudpickle_version"
CONFIG_KEY_ARTIFACTS = "artifacts"
CONFIG_KEY_ARTIFACT_RELATIVE_PATH = "path"
CONFIG_KEY_ARTIFACT_URI = "uri"
MODEL_CODE_PATH = "model_code_path"
MODEL_CONFIG = "config"
PYTHON_MODEL_FILE = "python_model.pkl"
ARTIFACTS_DIR = "artifacts"


class PythonModelContext:
    """What a :class:`PythonModel` gets at load and predict time: artifacts and model config."""

    def __init__(
        self,
        artifacts: Mapping[str, str] | None = None,
        model_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._artifacts = dict(artifacts or {})
        self._model_config = dict(model_config or {})

    @property
    def artifacts(self) -> dict[str, str]:
        """Artifact name -> absolute local path of the copy stored in the model."""
        return self._artifacts

    @property
    def model_config(self) -> dict[str, Any]:
        """The model configuration (saved values, overridden by ``load_model(model_config=)``)."""
        return self._model_config

    def __repr__(self) -> str:
        return (
            f"PythonModelContext(artifacts={self._artifacts!r}, "
            f"model_config={self._model_config!r})"
        )


class PythonModel:
    """Base class of custom models. Override :meth:`predict`; optionally ``predict_stream``.

    ``predict(self, context, model_input, params=None)`` returns predictions;
    ``predict_stream(self, context, model_input, params=None)`` (optional) returns a generator.
    The ``context`` argument may be omitted from either signature.
    """

    def load_context(self, context: PythonModelContext) -> None:
        """Called once when the model is loaded; load artifacts here."""

    def predict(
        self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None
    ) -> Any:
        raise NotImplementedError("PythonModel subclasses must implement predict()")


class _FunctionPythonModel(PythonModel):
    """Wraps a plain callable passed as ``python_model`` (or to ``set_model``)."""

    def __init__(self, func: Any) -> None:
        self.func = func

    @property
    def _envkit_wrapped_function(self) -> Any:
        """The user's function: its type hints are the model's (as in MLflow)."""
        return self.func

    def predict(
        self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None
    ) -> Any:
        return self.func(model_input)


def as_python_model(obj: Any) -> PythonModel:
    """``obj`` as a :class:`PythonModel` (callables are wrapped)."""
    if isinstance(obj, PythonModel):
        return obj
    if callable(obj):
        return _FunctionPythonModel(obj)
    raise UsageError(
        f"python_model must be a PythonModel instance, a callable or a path to a .py file, "
        f"got {type(obj).__name__}"
    )


def is_streamable(python_model: Any) -> bool:
    return callable(getattr(python_model, "predict_stream", None))


def _call(method: Any, context: PythonModelContext, model_input: Any, params: Any) -> Any:
    parameters = inspect.signature(method).parameters
    kwargs: dict[str, Any] = {}
    if "params" in parameters:
        kwargs["params"] = params
    elif params:
        import warnings

        warnings.warn(
            f"params {sorted(params)} were ignored: the model's {method.__name__}() takes no "
            "'params' argument",
            UserWarning,
            stacklevel=4,
        )
    if (
        "context" in parameters
        or len(
            [
                p
                for p in parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        )
        - ("params" in parameters)
        >= 2
    ):
        return method(context, model_input, **kwargs)
    return method(model_input, **kwargs)


class _PythonModelPyfuncWrapper:
    """Adapts a PythonModel to the pyfunc ``predict(data, params=None)`` interface.

    ``type_hint``: the ``predict`` input type hint the model's signature was inferred from. The
    wrapper checks (and converts: dicts to pydantic models) its input against it itself, because
    a loader that skips signature enforcement for such models (MLflow's, which leaves it to its
    own PythonModel class) would otherwise hand the model unchecked data.
    """

    def __init__(
        self, python_model: PythonModel, context: PythonModelContext, type_hint: Any = None
    ) -> None:
        self.python_model = python_model
        self.context = context
        self.type_hint = type_hint

    def _checked(self, model_input: Any) -> Any:
        if self.type_hint is None:
            return model_input
        from envkit.models.type_hints import validate_data_against_type_hint

        return validate_data_against_type_hint(model_input, self.type_hint)

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        model_input = self._checked(model_input)
        return _call(self.python_model.predict, self.context, model_input, params)

    def predict_stream(
        self, model_input: Any, params: dict[str, Any] | None = None
    ) -> Iterator[Any]:
        stream = getattr(self.python_model, "predict_stream", None)
        if stream is None:
            raise AttributeError("predict_stream")
        return _call(stream, self.context, model_input, params)

    def get_raw_model(self) -> PythonModel:
        return self.python_model


def _load_pyfunc(
    path: str, model_config: dict[str, Any] | None = None
) -> _PythonModelPyfuncWrapper:
    """Load a model saved by :func:`envkit.pyfunc.save_model` (the loader contract)."""
    from envkit.models.model import Model

    model_dir = Path(path)
    model = Model.load(model_dir)
    conf = model.get_flavor("python_function")
    config = dict(model_config if model_config is not None else conf.get(MODEL_CONFIG) or {})
    if conf.get(MODEL_CODE_PATH):
        from envkit.pyfunc.code import load_model_from_code

        code_file = resolve_inside(model_dir, os.path.basename(str(conf[MODEL_CODE_PATH])))
        python_model = as_python_model(load_model_from_code(code_file, config))
    else:
        relative = conf.get(CONFIG_KEY_PYTHON_MODEL)
        if not relative:
            raise ModelFormatError(
                "python_function flavor names neither python_model nor model_code_path"
            )
        python_model = _unpickle(resolve_inside(model_dir, str(relative)))
    artifacts = {
        name: str(resolve_inside(model_dir, str(info[CONFIG_KEY_ARTIFACT_RELATIVE_PATH])))
        for name, info in (conf.get(CONFIG_KEY_ARTIFACTS) or {}).items()
    }
    context = PythonModelContext(artifacts=artifacts, model_config=config)
    python_model.load_context(context)
    type_hint = None
    signature = model.signature
    if signature is not None and getattr(signature, "_is_signature_from_type_hint", False):
        from envkit.models.type_hints import input_type_hint

        type_hint = input_type_hint(python_model)
    return _PythonModelPyfuncWrapper(python_model, context, type_hint)


def _unpickle(pickle_path: Path) -> PythonModel:
    import cloudpickle

    from envkit.models.serialization import load_model_file

    return as_python_model(load_model_file(pickle_path, cloudpickle.load))
