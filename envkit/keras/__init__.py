"""The ``keras`` flavor (Keras 3), file-compatible with ``mlflow.keras``.

    import envkit.keras

    envkit.keras.save_model(model, "keras_model", input_example=X[:3])  # X: a numpy array
    model = envkit.keras.load_model("keras_model")           # the keras.Model
    pyfunc = envkit.pyfunc.load_model("keras_model")         # predict(ndarray or DataFrame)

The model is written by Keras' own ``model.save`` into ``data/model.keras`` (a zip of its config
and weights: no pickle), or, with ``save_exported_model=True``, exported as a TensorFlow
SavedModel into ``data/model/`` (``keras.export.ExportArchive``, endpoint ``serve``; needs
tensorflow). The flavor section has MLflow's keys (``data``, ``keras_version``,
``keras_backend``, ``save_exported_model``) and ``data/keras_module.txt`` names ``keras``.

Keras 3 runs on a backend (tensorflow, torch or jax) that it picks when it is first imported.
The backend the model was saved with is recorded, captured as a requirement (the capture
records what inference imports: ``torch``, not ``tensorflow``, for a torch-backed model) and,
when nothing else chose one (``KERAS_BACKEND`` unset, keras not imported yet), used to load it.

Loading keeps Keras' ``safe_mode``: a ``Lambda`` layer holding Python bytecode is refused
(``envkit scan`` reports it as dangerous) unless the model is trusted (``trust_model=True``,
``--trust-model``, ``ENVKIT_TRUST_MODEL=1``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "keras"
LOADER_MODULE = "envkit.keras"

# MLflow's names (mlflow/keras/save.py).
_MODEL_DATA_PATH = "data"
_MODEL_SAVE_PATH = "model"
_KERAS_MODULE_SPEC_PATH = "keras_module.txt"
_KERAS_SUFFIX = ".keras"

# The backends Keras 3 knows, and the distribution that provides each (what a model needs).
BACKEND_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow"),
    "torch": ("torch", "torch"),
    "jax": ("jax", "jax"),
    "numpy": ("numpy", "numpy"),
    "openvino": ("openvino", "openvino"),
}

__all__ = [
    "FLAVOR_NAME",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]
logger = logging.getLogger(__name__)


def import_keras(backend: str | None = None) -> Any:
    """Import keras; with the ``backend`` a model was saved with when nothing chose one yet
    (``KERAS_BACKEND`` unset and keras not imported). A backend chosen otherwise is kept, with a
    warning when it differs: Keras' own files load on any backend, code of the model may not."""
    from envkit.pyfunc.flavor_kit import import_library

    if (
        backend in BACKEND_DISTRIBUTIONS
        and "keras" not in sys.modules
        and not os.environ.get("KERAS_BACKEND")
    ):
        os.environ["KERAS_BACKEND"] = str(backend)
    keras = import_library("keras", flavor=FLAVOR_NAME)
    running = keras.backend.backend()
    if backend and running != backend:
        logger.warning(
            "the model was saved with the %s backend of Keras; this process runs %s "
            "(KERAS_BACKEND chooses it before keras is imported)",
            backend,
            running,
        )
    return keras


def _requirements(backend: str | None = None) -> list[str]:
    """keras and its backend's distribution, pinned to the versions installed here (the
    backend's provider: ``tensorflow-cpu`` when that is what provides ``tensorflow``)."""
    from envkit.pyfunc.flavor_kit import pin_library

    keras = import_keras()
    module, distribution = BACKEND_DISTRIBUTIONS.get(
        backend or keras.backend.backend(), ("tensorflow", "tensorflow")
    )
    return [pin_library("keras", "keras"), pin_library(module, distribution)]


def get_default_pip_requirements() -> list[str]:
    """What the model needs besides envkit: keras and the backend it runs on, pinned. (MLflow's
    lists keras only, and a model saved by it needs its backend named in ``pip_requirements``
    when its capture is off.)"""
    return _requirements()


def get_default_conda_env() -> dict[str, Any]:
    """The ``conda.yaml`` mapping of a model of this flavor: this Python, envkit and
    :func:`get_default_pip_requirements`."""
    from envkit.deps.envfiles import conda_env_dict
    from envkit.pyfunc.flavor_kit import with_envkit

    return conda_env_dict(with_envkit(get_default_pip_requirements()))


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    save_exported_model: bool = False,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: RequirementsArg = None,
    extra_pip_requirements: RequirementsArg = None,
    save_model_kwargs: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    conda_env: dict[str, Any] | str | os.PathLike[str] | None = None,
    envkit_model: Any = None,
) -> Any:
    """Save a Keras 3 model (``keras.Model``) as an MLflow Model directory at ``path``.

    ``save_exported_model=True`` exports a TensorFlow SavedModel (endpoint ``serve``) whose
    input spec comes from ``signature`` (tensor inputs, first dimension -1) or else from the
    model's own inputs; it loads without the model's Python code, with tensorflow only.
    ``save_model_kwargs`` go to ``model.save``."""
    keras = import_keras()
    from envkit.errors import UsageError
    from envkit.pyfunc.flavor_kit import with_envkit
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if not isinstance(model, keras.Model):
        raise UsageError(f"a keras model is a keras.Model, not a {type(model).__name__}")
    backend = keras.backend.backend()
    input_specs = _export_specs(model, signature) if save_exported_model else None

    def write(staging: Path, mlmodel: Any, code_dir: str | None) -> None:
        data = staging / _MODEL_DATA_PATH
        data.mkdir()
        (data / _KERAS_MODULE_SPEC_PATH).write_text("keras")
        if input_specs is not None:
            _export(keras, model, input_specs, data / _MODEL_SAVE_PATH)
        else:
            model.save(str(data / (_MODEL_SAVE_PATH + _KERAS_SUFFIX)), **(save_model_kwargs or {}))
        mlmodel.add_flavor(
            "python_function",
            loader_module=LOADER_MODULE,
            **({"code": code_dir} if code_dir else {}),
        )
        mlmodel.add_flavor(
            FLAVOR_NAME,
            data=_MODEL_DATA_PATH,
            keras_version=keras.__version__,
            keras_backend=backend,
            save_exported_model=bool(save_exported_model),
            **({"code": code_dir} if code_dir else {}),
        )

    def pyfunc_impl(staging: Path) -> KerasModelWrapper:
        if input_specs is None:
            return KerasModelWrapper(model)
        return KerasModelWrapper(
            _load_exported(staging / _MODEL_DATA_PATH / _MODEL_SAVE_PATH), True
        )

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=lambda: with_envkit(_requirements(backend)),
            pyfunc_impl=pyfunc_impl,
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


def _export_specs(model: Any, signature: Any) -> list[tuple[list[int | None], str]]:
    """``(shape, dtype)`` of each input of the exported endpoint: the signature's tensors (first
    dimension -1, the batch), else the model's own inputs."""
    from envkit.errors import UsageError
    from envkit.models.schema import TensorSpec

    if signature is None or signature is False:
        inputs = getattr(model, "inputs", None)
        if not inputs:
            raise UsageError(
                "save_exported_model=True needs the model's input shapes: build the model "
                "(keras.Input) or give a signature of tensor inputs"
            )
        return [([*tensor.shape], str(tensor.dtype)) for tensor in inputs]
    specs = list(signature.inputs.inputs)
    if not specs or not all(isinstance(spec, TensorSpec) for spec in specs):
        raise UsageError("save_exported_model=True needs a signature of tensor inputs")
    if any(not spec.shape or spec.shape[0] != -1 for spec in specs):
        raise UsageError(
            "the signature's tensor inputs must have -1 (the batch) as first dimension"
        )
    return [
        ([None if size == -1 else size for size in spec.shape], str(spec.type)) for spec in specs
    ]


def _export(
    keras: Any, model: Any, specs: list[tuple[list[int | None], str]], target: Path
) -> None:
    """Export ``model`` as a SavedModel at ``target`` with one endpoint, ``serve``."""
    from envkit.pyfunc.flavor_kit import import_library

    tf = import_library("tensorflow", flavor=FLAVOR_NAME)
    archive = keras.export.ExportArchive()
    archive.track(model)
    signature = [tf.TensorSpec(shape=shape, dtype=dtype) for shape, dtype in specs]
    archive.add_endpoint(name="serve", fn=model.call, input_signature=signature)
    archive.write_out(str(target), verbose=False)


def _load_exported(path: Path) -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("tensorflow", flavor=FLAVOR_NAME).saved_model.load(str(path))


def log_model(
    model: Any, artifact_path: str | None = None, *, name: str | None = None, **kwargs: Any
) -> Any:
    """Save ``model`` into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, model=model, **kwargs)


def load_model(
    model_uri: str | os.PathLike[str],
    *,
    custom_objects: dict[str, Any] | None = None,
    load_model_kwargs: dict[str, Any] | None = None,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> Any:
    """Load the ``keras.Model`` of the model at ``model_uri`` (an exported model: the
    TensorFlow object ``tf.saved_model.load`` gives, with its ``serve`` endpoint).

    ``custom_objects`` and ``load_model_kwargs`` go to ``keras.saving.load_model``; its
    ``safe_mode`` is off only for a trusted model."""
    from envkit.models.scan import ModelTrust
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(
        model_uri, FLAVOR_NAME, trust_model=trust_model, trusted_types=trusted_types
    )
    kwargs = dict(load_model_kwargs or {})
    if lambdas_trusted(ModelTrust.of(trust_model, trusted_types)):
        kwargs.setdefault("safe_mode", False)
    return _load(opened.path, opened.conf, custom_objects=custom_objects, **kwargs)


def lambdas_trusted(trust: Any) -> bool:
    """Whether ``trust`` (a :class:`~envkit.models.scan.ModelTrust`) vouches for Lambda layers
    holding Python bytecode: the whole model, or ``keras.layers.Lambda`` by name. envkit's scan
    refused the model before this point otherwise; Keras' own ``safe_mode`` is then lifted."""
    from envkit.models.scan import KERAS_LAMBDA

    return bool(trust.trust_model or trust.trusts(KERAS_LAMBDA))


def _load(model_dir: Path, conf: dict[str, Any], **kwargs: Any) -> Any:
    """The model the ``keras`` section ``conf`` of ``model_dir`` names."""
    from envkit._fs import resolve_inside
    from envkit.errors import ModelFormatError

    keras = import_keras(conf.get("keras_backend"))
    data = resolve_inside(model_dir, str(conf.get("data") or _MODEL_SAVE_PATH))
    if data.is_dir():
        data = data / _MODEL_SAVE_PATH
    if conf.get("save_exported_model"):
        if not data.is_dir():
            raise ModelFormatError(f"the exported keras model's directory {data} is missing")
        return _load_exported(data)
    target = data.with_name(data.name + _KERAS_SUFFIX)
    if not target.is_file():
        raise ModelFormatError(f"the keras model's file {target.name} is missing")
    return keras.saving.load_model(str(target), **kwargs)


class KerasModelWrapper:
    """pyfunc adapter (MLflow's): a DataFrame in, its values to ``model.predict``, a DataFrame
    with the input's index out; an array (or a tensor of any backend), a list, a tuple or a dict
    of arrays in, a numpy array out. An exported model predicts through its ``serve``
    endpoint."""

    def __init__(self, model: Any, exported: bool = False) -> None:
        self.model = model
        self.exported = exported

    def get_raw_model(self) -> Any:
        return self.model

    def _call(self, data: Any) -> Any:
        if self.exported:
            return self.model.serve(data)
        return self.model.predict(data, verbose=0)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import numpy as np

        if _is_dataframe(data):
            import pandas as pd

            return pd.DataFrame(_to_numpy(self._call(data.to_numpy())), index=data.index)
        if not isinstance(data, (np.ndarray, list, tuple, dict)):
            if not hasattr(data, "__array__"):
                raise TypeError(
                    "a keras model predicts on a pandas DataFrame, a numpy array (or a tensor), "
                    f"a list, a tuple or a dict of arrays, not {type(data).__name__}"
                )
            data = np.asarray(data)  # a backend's tensor: torch's, TensorFlow's, JAX's
        return _to_numpy(self._call(data))


def _to_numpy(result: Any) -> Any:
    """A backend tensor (or a dict / list of them) as numpy."""
    if isinstance(result, dict):
        return {key: _to_numpy(value) for key, value in result.items()}
    if isinstance(result, (list, tuple)):
        return type(result)(_to_numpy(value) for value in result)
    if hasattr(result, "numpy"):
        return result.numpy()
    import numpy as np

    return np.asarray(result)


def _is_dataframe(data: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> KerasModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.keras``): ``path`` is
    the model directory (MLflow's python_function section has no ``data``)."""
    from envkit.models.scan import ModelTrust
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    exported = bool(opened.conf.get("save_exported_model"))
    # the trust envkit gives the model's process (ENVKIT_TRUST_MODEL, ENVKIT_TRUSTED_TYPES)
    kwargs = {"safe_mode": False} if lambdas_trusted(ModelTrust.of()) and not exported else {}
    return KerasModelWrapper(_load(opened.path, opened.conf, **kwargs), exported)
