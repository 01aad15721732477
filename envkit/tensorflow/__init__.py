"""The ``tensorflow`` flavor, file-compatible with ``mlflow.tensorflow``.

    import envkit.tensorflow

    envkit.tensorflow.save_model(keras_model, "tf_model", input_example=X[:3])
    envkit.tensorflow.save_model(module, "tf_module", input_example=X[:3])  # a tf.Module
    model = envkit.tensorflow.load_model("tf_model")   # the keras.Model, or the loaded module
    pyfunc = envkit.pyfunc.load_model("tf_model")      # predict(ndarray or DataFrame)

Two kinds of model, in MLflow's layout:

- a Keras model (``tf.keras.Model``, Keras 3 on TensorFlow 2.16+) is written by its own
  ``model.save`` into ``data/model.keras``, with ``data/keras_module.txt`` and
  ``data/save_format.txt``; section keys ``data``, ``model_type: keras``, ``keras_version``
  (TensorFlow's version, as MLflow writes it), ``save_format``. ``custom_objects`` (and the
  objects registered with ``keras.saving.register_keras_serializable``) are pickled with
  cloudpickle into ``data/custom_objects.cloudpickle`` and scanned like every pickle at load;
- a ``tf.Module`` is written by ``tf.saved_model.save`` into ``tf2model/`` (a SavedModel: no
  pickle), section keys ``saved_model_dir``, ``model_type: tf2-module``.

MLflow 1.x's TF1 estimator models (``model_type`` absent, ``saved_model_dir``,
``meta_graph_tags``, ``signature_def_key``) load too: their pyfunc feeds the signature's named
inputs from a dict or a DataFrame's columns.

The requirement is TensorFlow's distribution as installed (``tensorflow-cpu==2.21.0`` where the
CPU build is what provides ``tensorflow``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from envkit.keras import KerasModelWrapper, lambdas_trusted

FLAVOR_NAME = "tensorflow"
LOADER_MODULE = "envkit.tensorflow"

# MLflow's names (mlflow/tensorflow/__init__.py).
_CUSTOM_OBJECTS_SAVE_PATH = "custom_objects.cloudpickle"
_GLOBAL_CUSTOM_OBJECTS_SAVE_PATH = "global_custom_objects.cloudpickle"
_KERAS_MODULE_SPEC_PATH = "keras_module.txt"
_KERAS_SAVE_FORMAT_PATH = "save_format.txt"
_MODEL_SAVE_PATH = "model"
_KERAS_MODEL_DATA_PATH = "data"
_TF2MODEL_SUBPATH = "tf2model"
MODEL_TYPE_KERAS = "keras"
MODEL_TYPE_TF1_ESTIMATOR = "tf1-estimator"
MODEL_TYPE_TF2_MODULE = "tf2-module"

# The Keras modules a model's keras_module.txt may name, and the module envkit imports for it:
# never any other module a file could name.
_KNOWN_KERAS_MODULES = {
    "tensorflow.keras": "tensorflow.keras",
    "keras": "keras",
    "tf_keras": "tf_keras",
    "keras.api._v2.keras": "tensorflow.keras",
}

__all__ = [
    "FLAVOR_NAME",
    "MODEL_TYPE_KERAS",
    "MODEL_TYPE_TF1_ESTIMATOR",
    "MODEL_TYPE_TF2_MODULE",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]
logger = logging.getLogger(__name__)


def _tf() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("tensorflow", flavor=FLAVOR_NAME)


def get_default_pip_requirements(include_cloudpickle: bool = False) -> list[str]:
    """What the model needs besides envkit, as MLflow's: TensorFlow's installed distribution
    pinned (``tensorflow-cpu``, ``tensorflow``...), and cloudpickle for custom objects."""
    from envkit.pyfunc.flavor_kit import pin_library

    pins = [pin_library("tensorflow", "tensorflow")]
    if include_cloudpickle:
        pins.append(pin_library("cloudpickle", "cloudpickle"))
    return pins


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
    custom_objects: dict[str, Any] | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: RequirementsArg = None,
    extra_pip_requirements: RequirementsArg = None,
    saved_model_kwargs: dict[str, Any] | None = None,
    keras_model_kwargs: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    conda_env: dict[str, Any] | str | os.PathLike[str] | None = None,
    envkit_model: Any = None,
) -> Any:
    """Save a Keras model or a ``tf.Module`` as an MLflow Model directory at ``path``.

    ``keras_model_kwargs`` go to the Keras model's ``save``, ``saved_model_kwargs`` to
    ``tf.saved_model.save`` of a module."""
    tf = _tf()
    from envkit.errors import UsageError
    from envkit.pyfunc.flavor_kit import with_envkit
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if isinstance(model, tf.keras.Model):
        keras_kwargs = dict(keras_model_kwargs or {})
        globals_ = _global_custom_objects(tf)
        pickles = bool(custom_objects) or bool(globals_)

        def write(staging: Path, mlmodel: Any, code_dir: str | None) -> None:
            _write_keras(tf, model, staging, custom_objects, globals_, keras_kwargs)
            _add_flavors(
                mlmodel, code_dir, {"data": _KERAS_MODEL_DATA_PATH},
                model_type=MODEL_TYPE_KERAS, keras_version=tf.__version__,
                save_format=keras_kwargs.get("save_format", "tf"),
            )  # fmt: skip

        impl: Any = KerasModelWrapper(model)
    elif isinstance(model, tf.Module):
        pickles = False

        def write(staging: Path, mlmodel: Any, code_dir: str | None) -> None:
            target = staging / _TF2MODEL_SUBPATH
            tf.saved_model.save(model, str(target), **(saved_model_kwargs or {}))
            _add_flavors(
                mlmodel, code_dir, {},
                saved_model_dir=_TF2MODEL_SUBPATH, model_type=MODEL_TYPE_TF2_MODULE,
            )  # fmt: skip

        impl = _TF2ModuleWrapper(model)
    else:
        raise UsageError(
            "a tensorflow model is a Keras model (tf.keras.Model) or a tf.Module, not a "
            f"{type(model).__name__}"
        )
    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=lambda: with_envkit(get_default_pip_requirements(pickles)),
            pyfunc_impl=lambda staging: impl,
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


def _add_flavors(
    mlmodel: Any, code_dir: str | None, pyfunc_options: dict[str, str], **flavor: Any
) -> None:
    code = {"code": code_dir} if code_dir else {}
    mlmodel.add_flavor(FLAVOR_NAME, code=code_dir, **pyfunc_options, **flavor)
    mlmodel.add_flavor("python_function", loader_module=LOADER_MODULE, **code, **pyfunc_options)


def _global_custom_objects(tf: Any) -> dict[str, Any]:
    """The objects registered with ``keras.saving.register_keras_serializable`` (MLflow saves
    them beside the model so that a process that did not register them can load it)."""
    try:
        return dict(tf.keras.saving.get_custom_objects())
    except AttributeError:
        return {}


def _write_keras(
    tf: Any,
    model: Any,
    staging: Path,
    custom_objects: dict[str, Any] | None,
    global_objects: dict[str, Any],
    keras_kwargs: dict[str, Any],
) -> None:
    data = staging / _KERAS_MODEL_DATA_PATH
    data.mkdir()
    if custom_objects:
        _pickle(custom_objects, data / _CUSTOM_OBJECTS_SAVE_PATH)
    if global_objects:
        _pickle(global_objects, data / _GLOBAL_CUSTOM_OBJECTS_SAVE_PATH)
    (data / _KERAS_MODULE_SPEC_PATH).write_text("tensorflow.keras")
    save_format = keras_kwargs.pop("save_format", "tf")
    (data / _KERAS_SAVE_FORMAT_PATH).write_text(save_format)
    suffix = ".h5" if save_format == "h5" else ".keras"  # TF >= 2.16 writes no SavedModel here
    model.save(str(data / (_MODEL_SAVE_PATH + suffix)), **keras_kwargs)


def _pickle(objects: dict[str, Any], target: Path) -> None:
    import cloudpickle

    with open(target, "wb") as handle:
        cloudpickle.dump(objects, handle)


def log_model(
    model: Any, artifact_path: str | None = None, *, name: str | None = None, **kwargs: Any
) -> Any:
    """Save ``model`` into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, model=model, **kwargs)


def load_model(
    model_uri: str | os.PathLike[str],
    *,
    saved_model_kwargs: dict[str, Any] | None = None,
    keras_model_kwargs: dict[str, Any] | None = None,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> Any:
    """Load the model at ``model_uri``: the Keras model, the ``tf.Module`` as
    ``tf.saved_model.load`` gives it, or a TF1 estimator's signature function. Its pickles
    (custom objects) are scanned first."""
    from envkit.models.scan import ModelTrust
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(
        model_uri, FLAVOR_NAME, trust_model=trust_model, trusted_types=trusted_types
    )
    model_type = _model_type(opened.conf)
    if model_type == MODEL_TYPE_KERAS:
        kwargs = dict(keras_model_kwargs or {})
        if lambdas_trusted(ModelTrust.of(trust_model, trusted_types)):
            kwargs.setdefault("safe_mode", False)
        return _load_keras(opened.file("data", _MODEL_SAVE_PATH), opened.conf, **kwargs)
    saved_model_dir = opened.file("saved_model_dir")
    if model_type == MODEL_TYPE_TF2_MODULE:
        return _tf().saved_model.load(str(saved_model_dir), **(saved_model_kwargs or {}))
    return _load_tf1(saved_model_dir, opened.conf)[1]


def _model_type(conf: dict[str, Any]) -> str:
    """The section's ``model_type`` (MLflow before 2.0 wrote none: a TF1 estimator)."""
    from envkit.errors import ModelFormatError

    model_type = str(conf.get("model_type") or MODEL_TYPE_TF1_ESTIMATOR)
    if model_type not in (MODEL_TYPE_KERAS, MODEL_TYPE_TF2_MODULE, MODEL_TYPE_TF1_ESTIMATOR):
        raise ModelFormatError(f"the tensorflow model's model_type {model_type!r} is unknown")
    return model_type


def _keras_module(data: Path) -> Any:
    """The Keras module ``keras_module.txt`` names (one envkit knows, never another module)."""
    import importlib

    from envkit.errors import ModelFormatError

    spec = data / _KERAS_MODULE_SPEC_PATH
    name = spec.read_text().strip() if spec.is_file() else "tensorflow.keras"
    known = _KNOWN_KERAS_MODULES.get(name)
    if known is None:
        raise ModelFormatError(
            f"the tensorflow model's keras module {name!r} is not one envkit knows "
            f"({', '.join(sorted(_KNOWN_KERAS_MODULES))})"
        )
    _tf()
    return importlib.import_module(known)


def _load_keras(data: Path, conf: dict[str, Any], **kwargs: Any) -> Any:
    """The Keras model in ``data`` (MLflow's ``data/`` directory, or the model file's stem)."""
    from envkit.errors import ModelFormatError

    directory = data if data.is_dir() else data.parent
    keras = _keras_module(directory)
    custom = _custom_objects(directory)
    custom.update(kwargs.pop("custom_objects", None) or {})
    stem = directory / _MODEL_SAVE_PATH if data.is_dir() else data
    save_format = _save_format(directory, conf)
    candidates = [stem.with_name(stem.name + ".h5")] if save_format == "h5" else []
    candidates += [stem.with_name(stem.name + ".keras"), stem]
    for candidate in candidates:
        if candidate.is_dir():
            _check_savedmodel_readable(keras, candidate)
        if candidate.exists():
            return keras.models.load_model(str(candidate), custom_objects=custom, **kwargs)
    raise ModelFormatError(f"the tensorflow model has no {stem.name}.keras in {directory.name}/")


def _check_savedmodel_readable(keras: Any, candidate: Path) -> None:
    """A Keras model saved as a SavedModel directory (Keras 2's ``save_format="tf"``, MLflow
    2.x's default) cannot be read by Keras 3, which reads ``.keras`` and H5 files only: say so
    and what to do, rather than Keras' "File format not supported"."""
    from packaging.version import InvalidVersion, Version

    from envkit.errors import ModelFormatError

    try:
        major = Version(str(getattr(keras, "__version__", "0"))).major
    except InvalidVersion:
        return
    if major >= 3:
        raise ModelFormatError(
            f"the Keras model in {candidate.parent.name}/{candidate.name}/ is a SavedModel "
            f"written by Keras 2, which Keras {keras.__version__} cannot read (it reads .keras "
            "and .h5 files): load it where its requirements are installed (envkit validate / "
            "envkit predict rebuild them; TensorFlow 2.15 or older, or tf-keras with "
            "TF_USE_LEGACY_KERAS=1)"
        )


def _save_format(directory: Path, conf: dict[str, Any]) -> str:
    path = directory / _KERAS_SAVE_FORMAT_PATH
    if path.is_file():
        return path.read_text().strip()
    return str(conf.get("save_format") or "h5")  # MLflow's default for its oldest models


def _custom_objects(directory: Path) -> dict[str, Any]:
    """The custom objects MLflow's layout keeps beside the model (scanned before this point:
    open_flavor / the pyfunc loader), the registered ones first."""
    import pickle

    merged: dict[str, Any] = {}
    for name in (_GLOBAL_CUSTOM_OBJECTS_SAVE_PATH, _CUSTOM_OBJECTS_SAVE_PATH):
        path = directory / name
        if path.is_file():
            import cloudpickle  # noqa: F401  (the objects may reference its internals)

            with open(path, "rb") as handle:
                merged.update(pickle.load(handle))
    return merged


def _load_tf1(saved_model_dir: Path, conf: dict[str, Any]) -> tuple[Any, Any]:
    """A TF1 estimator's SavedModel (loaded by its ``meta_graph_tags``) and the signature
    function its ``signature_def_key`` names."""
    from envkit.errors import ModelFormatError

    loaded = _tf().saved_model.load(str(saved_model_dir), tags=conf.get("meta_graph_tags"))
    key = conf.get("signature_def_key")
    if key not in loaded.signatures:
        raise ModelFormatError(
            f"the tensorflow model has no signature {key!r} (it has: "
            f"{', '.join(sorted(loaded.signatures.keys())) or 'none'})"
        )
    return loaded, loaded.signatures[key]


class _TF2ModuleWrapper:
    """pyfunc adapter of a ``tf.Module`` (MLflow's): an array, a list or a tensor in, converted
    to a tensor and called, a numpy array out."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def get_raw_model(self) -> Any:
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import numpy as np

        tf = _tf()
        if not isinstance(data, (np.ndarray, list, tf.Tensor)):
            raise TypeError(
                "a tf.Module predicts on a numpy array, a list or a tf.Tensor, not "
                f"{type(data).__name__}"
            )
        result = self.model(tf.convert_to_tensor(data))
        return result.numpy() if isinstance(result, tf.Tensor) else result


class _TF1Wrapper:
    """pyfunc adapter of a TF1 estimator's signature (MLflow's): a dict or a DataFrame's columns
    feed the named inputs; each output is a column (flattened when one value per row)."""

    def __init__(self, model: Any, infer: Any) -> None:
        self.model = model  # keeps the variables the signature function only references weakly
        self.infer = infer

    def get_raw_model(self) -> Any:
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import numpy as np
        import pandas as pd

        tf = _tf()
        if isinstance(data, dict):
            columns = dict(data)
        elif isinstance(data, pd.DataFrame):
            columns = {str(col): np.array(data[col].to_list()) for col in data.columns}
        else:
            raise TypeError("a TF1 estimator predicts on a dict or a DataFrame")
        # each input as the signature declares it (a DataFrame's floats are float64)
        specs = self.infer.structured_input_signature[1]
        feed = {
            key: tf.constant(value, dtype=getattr(specs.get(key), "dtype", None))
            for key, value in columns.items()
        }
        raw = self.infer(**feed)
        out: dict[str, Any] = {}
        for key in raw:
            value = raw[key].numpy()
            flat = value.ndim != 1 and all(len(row) == 1 for row in value)
            out[key] = value.ravel() if flat else value.tolist()
        return out if isinstance(data, dict) else pd.DataFrame.from_dict(out)


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> Any:
    """Loader contract (also used for models MLflow wrote with ``mlflow.tensorflow``): ``path``
    is the python_function ``data`` directory of a Keras model, or the model directory."""
    from envkit.models.scan import ModelTrust
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    model_type = _model_type(opened.conf)
    if model_type == MODEL_TYPE_KERAS:
        data = Path(path)
        if data.resolve() == opened.path.resolve():
            data = opened.file("data", _MODEL_SAVE_PATH)
        # MLflow compiles a model of the (old) SavedModel format only.
        kwargs: dict[str, Any] = {"compile": _save_format(data, opened.conf) == "tf"}
        if lambdas_trusted(ModelTrust.of()):  # the trust envkit gives the model's process
            kwargs["safe_mode"] = False
        return KerasModelWrapper(_load_keras(data, opened.conf, **kwargs))
    saved_model_dir = opened.file("saved_model_dir")
    if model_type == MODEL_TYPE_TF2_MODULE:
        return _TF2ModuleWrapper(_tf().saved_model.load(str(saved_model_dir)))
    return _TF1Wrapper(*_load_tf1(saved_model_dir, opened.conf))
