"""The program that runs *inside* a sandbox: load the model, predict, report as JSON.

Started as ``python -I -m envkit.sandbox.runner REQUEST.json`` by :mod:`envkit.sandbox.validate`
with the environment's interpreter. It reads the request (model directory, input, where to
write), and writes two files: a status file updated at each stage (so that a timeout can say
where the model was), and the result file. Everything here runs with the environment's
packages only, on Python 3.9+, and imports nothing heavy before it is needed.

The request's ``loader`` chooses how the model is loaded: ``envkit``
(:func:`envkit.pyfunc.load_model`, which reads the flavors envkit knows, MLflow's
``mlflow.sklearn`` and ``mlflow.pyfunc.model`` included, without importing MLflow where the
flavor does not need its classes), ``mlflow`` (``mlflow.pyfunc.load_model``, MLflow installed
as the model records it), or ``auto``: envkit's for the flavors it knows, else MLflow's when
the loader is ``mlflow.*`` and MLflow is installed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings
from typing import Any

PREVIEW_ROWS = 5
PREVIEW_CHARS = 800
MAX_STREAM_CHUNKS = 1000


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, default=str)
    os.replace(tmp, path)


class _Run:
    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.result: dict[str, Any] = {
            "ok": False,
            "stage": "start",
            "timings": {},
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "prefix": sys.prefix,
            "warnings": [],
        }

    def stage(self, name: str) -> None:
        self.result["stage"] = name
        _write_json(self.request["status_path"], self.result)

    def timed(self, name: str, start: float) -> None:
        self.result["timings"][name] = round(time.perf_counter() - start, 4)

    def fail(self, exc: BaseException, kind: str | None = None) -> None:
        from envkit.deps.envvars import redact_values

        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.result["error"] = {
            "stage": self.result["stage"],
            "kind": kind or _error_kind(exc, self.result["stage"]),
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}".replace("builtins.", ""),
            # A model's error may quote the secret it read: CI logs keep reports for long.
            "message": redact_values(_message(exc)),
            "traceback": redact_values(trace),
            **_envkit_error_class(exc),
            **_missing_module(exc),
        }

    def finish(self) -> int:
        if self.request.get("report_imports"):
            self.result["imported"] = _imported_sources()
        _write_json(self.request["result_path"], self.result)
        return 0 if self.result["ok"] else 1


def _imported_sources() -> list[str]:
    """The environment's Python source files this run imported that have no bytecode yet
    (envkit compiles them after the run, outside it: the environment is read-only to the
    model). A run whose imports all had bytecode reports none, and nothing is compiled."""
    import importlib.util

    prefix = os.path.join(sys.prefix, "")
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py") and path.startswith(prefix):
            files.add(path)
    return sorted(f for f in files if not os.path.exists(importlib.util.cache_from_source(f)))


def _message(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + "..."


def _envkit_error_class(exc: BaseException) -> dict[str, Any]:
    """For an :class:`~envkit.errors.EnvkitError`: its class name and exit code, so that the
    host reports it as it would report the same error raised in its own process."""
    try:
        from envkit.errors import EnvkitError
    except ImportError:
        return {}
    if not isinstance(exc, EnvkitError):
        return {}
    return {"class": type(exc).__name__, "exit_code": int(exc.exit_code)}


def _missing_module(exc: BaseException) -> dict[str, str]:
    """The module an import failure could not find (``ImportError.name``, also through the
    exceptions it was raised from): data for the report's hint."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, ImportError) and seen.name:
            return {"module": seen.name}
        seen = seen.__cause__ or seen.__context__
    return {}


def _error_kind(exc: BaseException, stage: str) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    message = str(exc)
    if "SchemaEnforcementError" in names or "Failed to enforce schema" in message:
        return "schema"
    if names & {"ModuleNotFoundError", "MissingModuleError"} or (
        stage == "load" and names & {"ImportError", "LoaderImportError"}
    ):
        return "import"
    return stage


# --- the network ---------------------------------------------------------------------------------

# Audit events (PEP 578) of a process reaching for another host, with the argument that names it.
_NETWORK_EVENTS = {
    "socket.getaddrinfo": 0,
    "socket.gethostbyname": 0,
    "socket.gethostbyname_ex": 0,
    "socket.connect": 1,
    "socket.sendto": 1,
}
_LOOPBACK = ("localhost", "127.", "::1", "0.0.0.0", "::")
MAX_NETWORK_RECORDS = 20


def _remote_host(event: str, args: tuple[Any, ...]) -> str | None:
    """The host ``event`` reaches for, unless it is this machine (loopback, a Unix socket)."""
    target = args[_NETWORK_EVENTS[event]] if len(args) > _NETWORK_EVENTS[event] else None
    if isinstance(target, tuple):
        target = target[0] if target else None
    if isinstance(target, bytes):
        target = target.decode("ascii", "replace")
    if not isinstance(target, str) or not target:
        return None
    if event in ("socket.connect", "socket.sendto") and "/" in target:
        return None  # a Unix socket path given as a string
    if target == "::" or target.startswith(_LOOPBACK):
        return None
    return target


def watch_network(run: _Run) -> None:
    """Record in ``run.result["network"]`` each remote host the model's process reaches for
    (resolving a name, connecting, sending), with the stage: data for the report, which says
    that a failure came from a model needing the network, without reading its message."""
    records: list[dict[str, str]] = run.result.setdefault("network", [])
    seen: set[tuple[str, str]] = set()
    named: set[str] = set()  # stages that looked a name up: their connects go to its address

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event not in _NETWORK_EVENTS or len(records) >= MAX_NETWORK_RECORDS:
            return
        try:
            host = _remote_host(event, args)
        except Exception:  # never disturb the audited call
            return
        stage = str(run.result.get("stage", "start"))
        if host is None or (stage, host) in seen:
            return
        if event.startswith("socket.get"):
            named.add(stage)
        elif stage in named:
            return
        seen.add((stage, host))
        records.append({"stage": stage, "host": host})

    sys.addaudithook(hook)


# --- loading -------------------------------------------------------------------------------------


def _read_mlmodel(model_dir: str) -> dict[str, Any]:
    from envkit._parsing import load_yaml

    with open(os.path.join(model_dir, "MLmodel"), encoding="utf-8") as handle:
        data = load_yaml(handle.read())
    return data if isinstance(data, dict) else {}


def _chosen_loader(loader_module: str, choice: str) -> str:
    """``envkit`` or ``mlflow``: what ``choice`` (``auto``, ``envkit``, ``mlflow``) means for a
    model whose ``python_function.loader_module`` is ``loader_module``."""
    import importlib.util

    if choice != "auto":
        return choice
    if not loader_module.startswith("mlflow."):
        return "envkit"
    from envkit.models.flavors import envkit_loader_for

    if envkit_loader_for(loader_module) != loader_module:
        return "envkit"  # a flavor envkit knows: its loader, MLflow not imported
    return "mlflow" if importlib.util.find_spec("mlflow") is not None else "envkit"


LOADER_NAMES = {"envkit": "envkit.pyfunc.load_model", "mlflow": "mlflow.pyfunc.load_model"}


def _loader(mlmodel: dict[str, Any], choice: str = "auto") -> str:
    """``envkit`` or ``mlflow``: the loader ``choice`` picks for this MLmodel."""
    conf = (mlmodel.get("flavors") or {}).get("python_function") or {}
    return _chosen_loader(str(conf.get("loader_module") or ""), choice)


def _load(model_dir: str, loader: str) -> Any:
    import importlib.util

    if loader == "mlflow":
        if importlib.util.find_spec("mlflow") is None:
            from envkit.errors import LoaderImportError

            raise LoaderImportError(
                "--loader mlflow: MLflow is not installed in the environment (the model's "
                "requirements do not list mlflow); use --loader envkit or auto",
                module="mlflow",
            )
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(model_dir)
    from envkit.pyfunc import load_model

    # No load-time mismatch warning: the runner compares the environment with the requirements
    # it was built from itself (requirement_mismatches), and the report shows that once.
    return load_model(model_dir, suppress_warnings=True)


def _write_no_bytecode_under(directory: str) -> None:
    """Leave the model directory as it was: no ``__pycache__`` for the model's own code
    (``code/``, a models-from-code file). A cached environment's Python runs with ``-B``
    already (envkit compiles its packages after the run); this matters where the runner runs on
    the host's own interpreter (``--env-manager local``), whose packages still cache theirs."""
    from importlib.machinery import SourceFileLoader

    root = os.path.join(os.path.realpath(directory), "")
    name = "_cache_bytecode"  # what SourceLoader calls to write a .pyc (3.4 and later)
    original = getattr(SourceFileLoader, name)

    def cache_bytecode(self: Any, source_path: str, *args: Any, **kwargs: Any) -> Any:
        if os.path.realpath(source_path).startswith(root):
            return None
        return original(self, source_path, *args, **kwargs)

    setattr(SourceFileLoader, name, cache_bytecode)


# --- input ---------------------------------------------------------------------------------------


def _input_example(model_dir: str, mlmodel: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """(data, params) of the model's saved input example; (None, None) when it has none."""
    info = mlmodel.get("saved_input_example_info")
    if not info:
        return None, None
    try:
        from envkit.models.input_example import load_input_example, load_input_example_params
    except ImportError:  # an envkit without the reader (older build)
        return _fallback_input_example(model_dir, info)
    return load_input_example(model_dir, info), load_input_example_params(model_dir, info)


def _fallback_input_example(
    model_dir: str, info: dict[str, Any]
) -> tuple[Any, dict[str, Any] | None]:
    """Read ``input_example.json`` as MLflow writes it (used when envkit has no reader)."""
    from envkit._fs import resolve_inside

    path = resolve_inside(model_dir, str(info.get("artifact_path") or "input_example.json"))
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    kind = info.get("type")
    params = info.get("params")
    if kind == "dataframe":
        import pandas as pd

        orient = info.get("pandas_orient", "split")
        if orient == "split":
            frame = pd.DataFrame(payload["data"], columns=payload.get("columns"))
            if payload.get("index") is not None:
                frame.index = payload["index"]
            return frame, params
        return pd.DataFrame.from_records(payload), params
    if kind == "ndarray":
        import numpy as np

        inputs = payload.get("inputs", payload) if isinstance(payload, dict) else payload
        if isinstance(inputs, dict):
            return {k: np.asarray(v) for k, v in inputs.items()}, params
        return np.asarray(inputs), params
    return payload, params


def _serving_input(
    path: str, content_type: str, model_dir: str
) -> tuple[Any, dict[str, Any] | None]:
    """(data, params) from a serving payload file, converted to the model's input schema."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        from envkit.models.serving_input import parse_serving_input
    except ImportError:  # an envkit without the parser (older build)
        if content_type == "csv":
            import io

            import pandas as pd

            return pd.read_csv(io.StringIO(text)), None
        return _fallback_serving_input(json.loads(text))
    from envkit.models.model import Model

    meta = Model.load(os.path.join(model_dir, "MLmodel"))
    signature = meta.signature
    return parse_serving_input(
        text,
        content_type="text/csv" if content_type == "csv" else "application/json",
        schema=signature.inputs if signature is not None else None,
        params_schema=getattr(signature, "params", None) if signature is not None else None,
        signature_from_type_hint=bool(meta.is_signature_from_type_hint),
    )


def _fallback_serving_input(payload: Any) -> tuple[Any, dict[str, Any] | None]:
    """MLflow's scoring-server JSON: one of dataframe_split/dataframe_records/instances/inputs."""
    if not isinstance(payload, dict):
        raise ValueError(
            "a serving payload must be a JSON object with one of dataframe_split, "
            "dataframe_records, instances or inputs"
        )
    params = payload.get("params")
    keys = [
        k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in payload
    ]
    if len(keys) != 1:
        raise ValueError(
            "a serving payload needs exactly one of dataframe_split, dataframe_records, "
            f"instances, inputs (found: {', '.join(sorted(payload)) or 'nothing'})"
        )
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        import pandas as pd

        return pd.DataFrame(value["data"], columns=value.get("columns")), params
    if key == "dataframe_records":
        import pandas as pd

        return pd.DataFrame.from_records(value), params
    try:
        import numpy as np
    except ImportError:
        return value, params
    if isinstance(value, dict):
        return {k: np.asarray(v) for k, v in value.items()}, params
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return value, params
    return (np.asarray(value) if isinstance(value, list) else value), params


# --- output --------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Predictions as JSON data (what the scoring server returns under ``predictions``).

    Converted as MLflow's scoring server converts them: numpy and pandas values to lists and
    records, bytes to base64 (``base64.encodebytes``), dates and times to ISO strings,
    pydantic models to dicts. Anything else raises :class:`TypeError`: a prediction is never
    sent as its ``str()``.
    """
    module = type(value).__module__
    if module.startswith("pandas"):
        return _pandas_jsonable(value)
    if module.startswith("numpy"):
        return _numpy_jsonable(value)
    if hasattr(value, "toarray") and hasattr(value, "nnz"):  # scipy sparse
        return to_jsonable(value.toarray())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return _other_jsonable(value)


def _pandas_jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):  # Timestamp
        return value.isoformat()
    if hasattr(value, "notna") and hasattr(value, "where"):  # missing values are null
        value = value.astype(object).where(value.notna(), None)
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return to_jsonable(value.to_dict(orient="records"))
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    return _other_jsonable(value)


def _numpy_jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return value.tolist()
        if value.dtype.kind == "M":
            return np.datetime_as_string(value).tolist()
        return to_jsonable(value.tolist())
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value))
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    return _other_jsonable(value)


def _other_jsonable(value: Any) -> Any:
    """Bytes, dates and times, pydantic models; anything else has no JSON form."""
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.encodebytes(bytes(value)).decode("ascii")
    import datetime

    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    dump = getattr(value, "model_dump", None)  # pydantic 2
    if callable(dump) and type(value).__module__ != "builtins":
        return to_jsonable(dump())
    raise TypeError(f"a value of type {public_type_name(type(value))} has no JSON form")


def public_type_name(cls: type) -> str:
    """``pandas.DataFrame``, not ``pandas.core.frame.DataFrame``, when the package exports it."""
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    top = sys.modules.get(module.split(".", 1)[0])
    if top is not None and getattr(top, cls.__qualname__, None) is cls:
        return f"{top.__name__}.{cls.__qualname__}"
    return f"{module}.{cls.__qualname__}"


def describe_output(value: Any) -> dict[str, Any]:
    """Type, shape and a short preview of a prediction."""
    cls = type(value)
    info: dict[str, Any] = {"type": public_type_name(cls)}
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        info["shape"] = [int(s) if s is not None else None for s in shape]
    elif isinstance(value, (list, tuple, dict, str)):
        info["shape"] = [len(value)]
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        info["dtype"] = str(dtype)
    elif hasattr(value, "dtypes"):
        info["dtype"] = ", ".join(f"{k}: {v}" for k, v in dict(value.dtypes).items())
    try:
        if hasattr(value, "head") and hasattr(value, "to_string"):
            preview = value.head(PREVIEW_ROWS).to_string()
        elif isinstance(value, (list, tuple)):
            preview = json.dumps(to_jsonable(list(value[:PREVIEW_ROWS])), default=str)
        elif getattr(value, "ndim", 0) and hasattr(value, "__getitem__"):
            preview = repr(value[:PREVIEW_ROWS])
        else:
            preview = json.dumps(to_jsonable(value), default=str)
    except Exception:
        preview = repr(value)
    if len(preview) > PREVIEW_CHARS:
        preview = preview[:PREVIEW_CHARS] + "..."
    info["preview"] = preview
    return info


# --- requirements check --------------------------------------------------------------------------


def requirement_mismatches(requirements: list[str]) -> list[dict[str, str]]:
    """Requirements the environment does not satisfy (after a --python change, say)."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    result = []
    for line in requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            result.append({"requirement": line, "installed": "", "problem": "not installed"})
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            result.append(
                {
                    "requirement": line,
                    "installed": installed,
                    "problem": f"{req.name} {installed} is installed",
                }
            )
    return result


# --- main ----------------------------------------------------------------------------------------


def _predict(model: Any, data: Any, params: dict[str, Any] | None) -> Any:
    if params:
        return model.predict(data, params=params)
    return model.predict(data)


def _is_streamable(mlmodel: dict[str, Any], model: Any) -> bool:
    conf = (mlmodel.get("flavors") or {}).get("python_function") or {}
    return bool(conf.get("streamable")) and hasattr(model, "predict_stream")


def _body(run: _Run, request: dict[str, Any]) -> None:
    model_dir = request["model_dir"]
    _write_no_bytecode_under(model_dir)
    run.stage("load")
    start = time.perf_counter()
    mlmodel = _read_mlmodel(model_dir)
    loader = _loader(mlmodel, str(request.get("loader") or "auto"))
    # (said even when the load fails, as the mismatches that may explain it)
    run.result["loader"] = LOADER_NAMES[loader]
    run.result["mismatches"] = requirement_mismatches(request.get("requirements") or [])
    model = _load(model_dir, loader)
    run.timed("load", start)
    if request.get("check_unrequested"):
        from envkit.deps.installed import unrequested_distributions

        run.result["unrequested"] = unrequested_distributions(
            [*(request.get("requirements") or []), *(request.get("build_dependencies") or [])]
        )

    run.stage("input")
    start = time.perf_counter()
    if request.get("input_path"):
        data, params = _serving_input(
            request["input_path"], request.get("content_type") or "json", model_dir
        )
        run.result["input"] = {"source": "file"}
    else:
        data, params = _input_example(model_dir, mlmodel)
        run.result["input"] = {"source": "input_example" if data is not None else None}
        if data is None:
            return  # nothing to predict on: the model loaded, which is all we can check
    run.timed("input", start)
    if params:
        run.result["input"]["params"] = sorted(params)

    run.stage("predict")
    start = time.perf_counter()
    prediction = _predict(model, data, params)
    run.timed("predict", start)
    run.result["output"] = describe_output(prediction)
    if request.get("predictions_path"):
        run.stage("output")
        _write_json(request["predictions_path"], {"predictions": to_jsonable(prediction)})

    if request.get("stream", True) and _is_streamable(mlmodel, model):
        run.stage("stream")
        start = time.perf_counter()
        chunks = []
        # predict_stream takes one input (MLflow's contract: enforcement refuses several rows):
        # a multi-row example streams its first row, as a client would send one.
        rows = 1
        if getattr(getattr(model, "metadata", None), "signature", None) is not None:
            data, rows = _first_row(data)
        stream = model.predict_stream(data, params=params) if params else model.predict_stream(data)
        for chunk in stream:
            chunks.append(chunk)
            if len(chunks) >= MAX_STREAM_CHUNKS:
                break
        run.timed("stream", start)
        run.result["stream"] = {"chunks": len(chunks), **describe_output(chunks)}
        if rows > 1:
            run.result["stream"]["note"] = f"streamed the first of {rows} rows"


def _first_row(data: Any) -> tuple[Any, int]:
    """``data`` cut to its first row when it has several (DataFrame, list, array), and how
    many it had."""
    if hasattr(data, "iloc") and getattr(data, "ndim", 1) == 2:
        return data.iloc[:1], len(data)
    if isinstance(data, list) or (hasattr(data, "shape") and getattr(data, "ndim", 0) >= 1):
        return data[:1], len(data)
    return data, 1


def execute(request: dict[str, Any]) -> int:
    """Run one request; returns the process exit status (0 ok, 1 the model failed)."""
    run = _Run(request)
    if request.get("watch_network", True):
        watch_network(run)
    interrupted: BaseException | None = None
    with warnings.catch_warnings(record=True) as captured:
        warnings.simplefilter("always")
        try:
            _body(run, request)
            run.result["ok"] = True
            run.result["stage"] = "done"
        except BaseException as exc:  # the model's failure is data for the report
            run.fail(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                interrupted = exc
    run.result["warnings"] = [f"{w.category.__name__}: {w.message}" for w in captured][:50]
    status = run.finish()
    if interrupted is not None:
        raise interrupted
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m envkit.sandbox.runner REQUEST.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as handle:
        request = json.load(handle)
    return execute(request)


if __name__ == "__main__":
    sys.exit(main())
