"""The ``onnx`` flavor, file-compatible with ``mlflow.onnx``.

    import envkit.onnx

    envkit.onnx.save_model(onnx_model, "model", input_example={"x": X})   # an onnx.ModelProto
    proto = envkit.onnx.load_model("model")            # the onnx.ModelProto, checked
    pyfunc = envkit.pyfunc.load_model("model")         # an onnxruntime InferenceSession behind

The flavor section uses MLflow's keys (``data``, ``onnx_version``, ``providers``,
``onnx_session_options``, ``code``) and the python_function section names its file with
``data``, so ``mlflow.onnx.load_model`` reads envkit models and envkit reads models MLflow
wrote. The pyfunc takes a dict of arrays (one per model input), one array (a model with one
input) or a DataFrame, and returns a dict of arrays (a DataFrame for a DataFrame), as MLflow's.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Union

FLAVOR_NAME = "onnx"
LOADER_MODULE = "envkit.onnx"
ONNX_EXECUTION_PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]
_MODEL_DATA_SUBPATH = "model.onnx"

# The session options MLflow applies when loading (any other SessionOptions attribute is
# accepted when saving, as MLflow does, and recorded, but neither MLflow nor envkit applies it:
# the MLmodel is input, and options such as optimized_model_filepath would write files).
APPLIED_SESSION_OPTIONS = (
    "inter_op_num_threads",
    "intra_op_num_threads",
    "execution_mode",
    "graph_optimization_level",
    "extra_session_config",
)
_GRAPH_OPTIMIZATION_LEVELS = (0, 1, 2, 99)


def _thread_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# MLflow's checks of the options it applies: key -> (accepts(value), what it must be)
_SESSION_OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "execution_mode": (
        lambda v: isinstance(v, str) and v.upper() in ("SEQUENTIAL", "PARALLEL"),
        "must be 'sequential' or 'parallel'",
    ),
    "graph_optimization_level": (
        lambda v: v in _GRAPH_OPTIMIZATION_LEVELS and not isinstance(v, bool),
        "must be 0, 1, 2 or 99",
    ),
    "intra_op_num_threads": (_thread_count, "must be an integer >= 0"),
    "inter_op_num_threads": (_thread_count, "must be an integer >= 0"),
    "extra_session_config": (
        lambda v: isinstance(v, dict),
        "must be a dict of session config entries",
    ),
}

__all__ = [
    "FLAVOR_NAME",
    "ONNX_EXECUTION_PROVIDERS",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]

logger = logging.getLogger(__name__)


def _onnx() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("onnx", flavor=FLAVOR_NAME)


def _onnxruntime() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("onnxruntime", flavor=FLAVOR_NAME)


def get_default_pip_requirements() -> list[str]:
    """onnx and onnxruntime (the pyfunc's inference engine), pinned to the installed versions."""
    from envkit.deps.envfiles import pin_installed

    return [pin_installed("onnx"), pin_installed("onnxruntime")]


def _check_providers(providers: Any) -> list[Any]:
    """The providers as MLmodel records them: names, or ``[name, {options}]`` pairs."""
    from envkit.errors import UsageError

    if isinstance(providers, str) or not isinstance(providers, (list, tuple)) or not providers:
        raise UsageError(
            "onnx_execution_providers must be a non-empty list of provider names or "
            f"(name, options) pairs, not {providers!r}"
        )
    recorded: list[Any] = []
    for entry in providers:
        if isinstance(entry, str):
            recorded.append(entry)
        elif (
            isinstance(entry, (list, tuple))
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], dict)
        ):
            recorded.append([entry[0], dict(entry[1])])
        else:
            raise UsageError(
                f"onnx_execution_providers entry {entry!r} is neither a provider name nor a "
                "(name, options) pair"
            )
    return recorded


def _check_session_options(options: Any) -> dict[str, Any] | None:
    """MLflow's rules: keys are onnxruntime SessionOptions attributes (or
    ``extra_session_config``, a dict); ``execution_mode`` sequential/parallel,
    ``graph_optimization_level`` 0, 1, 2 or 99, thread counts >= 0."""
    from envkit.errors import UsageError

    if options is None:
        return None
    if not isinstance(options, dict):
        raise UsageError(f"onnx_session_options must be a dict, not {type(options).__name__}")
    session_options = _onnxruntime().SessionOptions
    for key, value in options.items():
        rule = _SESSION_OPTION_RULES.get(key)
        if key != "extra_session_config" and not hasattr(session_options, key):
            problem: str | None = "is not an onnxruntime SessionOptions attribute"
        else:
            problem = rule[1] if rule is not None and not rule[0](value) else None
        if problem:
            raise UsageError(f"onnx_session_options[{key!r}] = {value!r}: {key} {problem}")
    ignored = sorted(set(options) - set(APPLIED_SESSION_OPTIONS))
    if ignored:
        logger.warning(
            "onnx_session_options %s are recorded, but loading applies only %s (as MLflow)",
            ", ".join(ignored),
            ", ".join(APPLIED_SESSION_OPTIONS),
        )
    return dict(options)


def _write_proto(onnx: Any, onnx_model: Any, target: Path, save_as_external_data: bool) -> None:
    """Write ``onnx_model`` to ``target`` (tensors of 1 KiB and more in a sibling file when
    ``save_as_external_data``), leaving the caller's object as it was: onnx moves the tensors
    of the proto it saves out to the external file, so a copy is saved."""
    proto = onnx_model
    if save_as_external_data:
        proto = onnx.ModelProto()
        proto.CopyFrom(onnx_model)
    onnx.save_model(proto, str(target), save_as_external_data=save_as_external_data)


def save_model(
    onnx_model: Any,
    path: str | os.PathLike[str],
    *,
    onnx_execution_providers: Sequence[Any] | None = None,
    onnx_session_options: dict[str, Any] | None = None,
    save_as_external_data: bool = True,
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
    """Save an ``onnx.ModelProto`` as an MLflow Model directory at ``path`` (``model.onnx``).

    ``onnx_execution_providers`` (default ``["CUDAExecutionProvider",
    "CPUExecutionProvider"]``: the GPU when onnxruntime has it) are names or ``(name,
    options)`` pairs; ``onnx_session_options`` is a dict of onnxruntime SessionOptions
    (``intra_op_num_threads``, ``inter_op_num_threads``, ``execution_mode``,
    ``graph_optimization_level``, ``extra_session_config``) applied when the pyfunc loads.
    ``save_as_external_data`` puts tensors of 1 KiB and more in a file beside ``model.onnx``.
    """
    from envkit._version import __version__
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    onnx = _onnx()
    if not isinstance(onnx_model, onnx.ModelProto):
        raise UsageError(f"onnx_model must be an onnx.ModelProto, not {type(onnx_model).__name__}")
    providers = _check_providers(
        ONNX_EXECUTION_PROVIDERS if onnx_execution_providers is None else onnx_execution_providers
    )
    session_options = _check_session_options(onnx_session_options)

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        _write_proto(onnx, onnx_model, staging / _MODEL_DATA_SUBPATH, save_as_external_data)
        pyfunc_conf: dict[str, Any] = {"loader_module": LOADER_MODULE, "data": _MODEL_DATA_SUBPATH}
        if code_dir:
            pyfunc_conf["code"] = code_dir
        model.add_flavor("python_function", **pyfunc_conf)
        model.add_flavor(
            FLAVOR_NAME,
            onnx_version=onnx.__version__,
            data=_MODEL_DATA_SUBPATH,
            providers=providers,
            onnx_session_options=session_options,
            code=code_dir,
        )

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=lambda: [
                f"envkit=={__version__}",
                *get_default_pip_requirements(),
            ],
            pyfunc_impl=lambda staging: _OnnxModelWrapper(
                staging / _MODEL_DATA_SUBPATH, providers, session_options
            ),
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
    onnx_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``onnx_model`` into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, onnx_model=onnx_model, **kwargs)


def _load_proto(model_file: Path) -> Any:
    """The ``onnx.ModelProto`` in ``model_file`` (external data read from beside it), checked
    by ``onnx.checker`` first (which also refuses external data outside the model)."""
    from envkit.errors import ModelFormatError

    onnx = _onnx()
    if not model_file.is_file():
        raise ModelFormatError(f"the model's ONNX file {model_file.name} is missing")
    from google.protobuf.message import DecodeError

    try:
        onnx.checker.check_model(str(model_file))
        return onnx.load(str(model_file))
    except (onnx.checker.ValidationError, DecodeError) as exc:
        raise ModelFormatError(f"{model_file.name} is not a valid ONNX model: {exc}") from exc


def load_model(model_uri: str | os.PathLike[str]) -> Any:
    """Load the ``onnx.ModelProto`` of the model at ``model_uri`` (checked by
    ``onnx.checker``)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(model_uri, FLAVOR_NAME)
    return _load_proto(opened.file("data", _MODEL_DATA_SUBPATH))


def _provider_name(entry: Any) -> str | None:
    if isinstance(entry, (list, tuple)):
        entry = entry[0] if entry else None
    return entry if isinstance(entry, str) else None


def _recorded_providers(conf: dict[str, Any]) -> list[Any]:
    """The flavor's providers, as onnxruntime takes them (``[name, options]`` -> tuple); the
    defaults when the MLmodel has none (or a malformed value, as MLflow)."""
    providers = conf.get("providers")
    if isinstance(providers, str):
        providers = [providers]
    elif not isinstance(providers, (list, tuple)) or not providers:
        providers = ONNX_EXECUTION_PROVIDERS
    return [tuple(p) if isinstance(p, list) else p for p in providers]


def _session_options(ort: Any, options: dict[str, Any] | None) -> Any:
    """An ``onnxruntime.SessionOptions`` with the recorded options MLflow applies."""
    from envkit.errors import ModelFormatError

    session = ort.SessionOptions()
    options = options if isinstance(options, dict) else {}
    try:
        if options.get("inter_op_num_threads"):
            session.inter_op_num_threads = int(options["inter_op_num_threads"])
        if options.get("intra_op_num_threads"):
            session.intra_op_num_threads = int(options["intra_op_num_threads"])
        mode = str(options.get("execution_mode") or "").upper()
        if mode in ("SEQUENTIAL", "PARALLEL"):
            session.execution_mode = getattr(ort.ExecutionMode, f"ORT_{mode}")
        if options.get("graph_optimization_level"):
            level = ort.GraphOptimizationLevel(int(options["graph_optimization_level"]))
            session.graph_optimization_level = level
        for key, value in dict(options.get("extra_session_config") or {}).items():
            session.add_session_config_entry(str(key), str(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelFormatError(
            f"the onnx flavor's onnx_session_options are invalid: {exc}"
        ) from exc
    return session


class _OnnxModelWrapper:
    """pyfunc adapter: an onnxruntime InferenceSession with the recorded providers and session
    options; ``predict`` takes a dict of arrays, one array or a DataFrame (see README)."""

    def __init__(
        self,
        model_file: Path,
        providers: Sequence[Any] | None,
        session_options: dict[str, Any] | None,
    ) -> None:
        ort = _onnxruntime()
        options = _session_options(ort, session_options)
        requested = _usable_providers(ort, _recorded_providers({"providers": providers}))
        try:
            self.rt = ort.InferenceSession(
                str(model_file), sess_options=options, providers=requested
            )
        except Exception as exc:
            if requested == ["CPUExecutionProvider"]:
                raise
            logger.warning(
                "onnxruntime failed to start the providers %s (%s); running on CPU",
                requested,
                exc,
            )
            self.rt = ort.InferenceSession(
                str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        self._invalid_argument = _invalid_argument_error(ort)
        self.inputs = [(i.name, i.type) for i in self.rt.get_inputs()]
        self.output_names = [o.name for o in self.rt.get_outputs()]

    def get_raw_model(self) -> Any:
        """The onnxruntime InferenceSession."""
        return self.rt

    def _feeds(self, data: Any) -> dict[str, Any]:
        import numpy as np

        from envkit.errors import SchemaEnforcementError

        names = [name for name, _ in self.inputs]
        if isinstance(data, dict):
            missing = [name for name in names if name not in data]
            if missing:
                raise SchemaEnforcementError(
                    f"the input has no {', '.join(missing)} for the ONNX model's inputs "
                    f"({', '.join(names)}; given: {', '.join(map(str, data)) or 'none'})"
                )
            feeds = {name: np.asarray(value) for name, value in data.items()}
        elif isinstance(data, np.ndarray):
            if len(names) != 1:
                raise SchemaEnforcementError(
                    f"one array is input for an ONNX model with one input; this one has "
                    f"{len(names)} ({', '.join(names)}): pass a dict or a DataFrame with them"
                )
            feeds = {names[0]: data}
        elif _is_dataframe(data):
            if len(names) == 1:
                feeds = {names[0]: data.values}
            else:
                missing = [name for name in names if name not in data.columns]
                if missing:
                    raise SchemaEnforcementError(
                        f"the DataFrame has no column {', '.join(missing)} for the ONNX model's "
                        f"inputs ({', '.join(names)})"
                    )
                feeds = {name: data[name].values for name in names}
        else:
            raise SchemaEnforcementError(
                "the ONNX model's input is a dict of arrays, an array or a DataFrame, not "
                f"{type(data).__name__}"
            )
        # float64 where the model takes float (JSON payloads are float64): cast, as MLflow.
        for name, kind in self.inputs:
            feed = feeds.get(name)
            if kind == "tensor(float)" and feed is not None and feed.dtype == np.float64:
                feeds[name] = feed.astype(np.float32)
        return feeds

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """A dict output name -> array; for a DataFrame input, a DataFrame with one column per
        output (each output flattened), as MLflow."""
        import numpy as np

        feeds = self._feeds(data)
        try:
            predicted = self.rt.run(self.output_names, feeds)
        except self._invalid_argument as exc:  # a shape, dtype or name the model refuses
            from envkit.errors import SchemaEnforcementError

            raise SchemaEnforcementError(f"the ONNX model refused its input: {exc}") from exc
        if _is_dataframe(data):
            import pandas as pd

            return pd.DataFrame(
                {
                    name: np.asarray(value).reshape(-1)
                    for name, value in zip(self.output_names, predicted)
                }
            )
        return dict(zip(self.output_names, predicted))


def _invalid_argument_error(ort: Any) -> type[BaseException]:
    """onnxruntime's error for input the model does not take (wrong shape, dtype or name)."""
    state = getattr(getattr(ort, "capi", None), "onnxruntime_pybind11_state", None)
    error = getattr(state, "InvalidArgument", None)
    if isinstance(error, type) and issubclass(error, BaseException):
        return error
    return _NeverRaised


class _NeverRaised(Exception):
    """Stands in for an error class this onnxruntime does not have."""


def _is_dataframe(data: Any) -> bool:
    """A pandas DataFrame (pandas is not imported for it: an array input never needs it)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


def _usable_providers(ort: Any, providers: list[Any]) -> list[Any]:
    """The recorded providers this onnxruntime has (CPU when it has none of them)."""
    available = set(ort.get_available_providers())
    usable = [p for p in providers if _provider_name(p) in available]
    missing = [_provider_name(p) for p in providers if _provider_name(p) not in available]
    if missing:
        log = logger.info if usable else logger.warning
        log(
            "the model lists the ONNX execution providers %s; this onnxruntime lacks %s, so it "
            "runs with %s",
            [_provider_name(p) for p in providers],
            missing,
            [_provider_name(p) for p in usable] or ["CPUExecutionProvider"],
        )
    return usable or ["CPUExecutionProvider"]


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _OnnxModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.onnx``): ``path`` is
    the python_function ``data`` file, ``model.onnx``, or the model directory."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    target = Path(path)
    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    if not target.is_file():
        target = opened.file_named(opened.conf.get("data") or _MODEL_DATA_SUBPATH)
    return _OnnxModelWrapper(
        target, opened.conf.get("providers"), opened.conf.get("onnx_session_options")
    )
