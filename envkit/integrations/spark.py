"""Batch inference on Apache Spark: :func:`spark_udf` (reached as ``envkit.pyfunc.spark_udf``).

The driver reads the model's signature (input columns, the result type, params), zips the model
and ships it with ``SparkContext.addFile``; each Spark Python worker extracts it once per host.

``env_manager="local"``: the worker loads the model with :func:`envkit.pyfunc.load_model` in its
own interpreter (the model's requirements must be installed there).

``env_manager="uv"``/``"virtualenv"``/``"conda"``: the model runs in its own rebuilt
environment. The driver provisions it first (a build failure is raised there, before any job
runs); then each executor provisions it through envkit's environment cache on its own host (a
cache hit once the host has built it; the cache's file lock makes concurrent Python workers
build once). Executors build from the package index: a virtual environment is not relocatable
(absolute paths, uv's hard links, the host's interpreter), so no archive of it is shipped.
Each Python worker starts one long-lived process in that environment
(:mod:`envkit.integrations.spark_worker`), which loads the model once and predicts the Arrow
batches fed to it over pipes; a failure there fails the Spark task with envkit's one-line
reason.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.errors import ModelFailedError, UsageError

__all__ = ["spark_udf"]

ENV_MANAGERS = ("local", "uv", "virtualenv", "conda")
# What the model's process needs besides the model's requirements: the Arrow transport.
_TRANSPORT_REQUIREMENTS = {"pyarrow": "pyarrow>=10", "pandas": "pandas>=1.3"}
_WORKER_MODULE = "envkit.integrations.spark_worker"


@dataclass(frozen=True)
class _UdfSpec:
    """What each Python worker needs to predict: picklable, sent with the UDF."""

    archive: str  # the file name given to SparkContext.addFile
    digest: str
    env_manager: str
    input_names: tuple[str, ...] | None  # the signature's columns; None: positional
    required: int
    params: dict[str, Any] | None
    extra_env: dict[str, str] = field(default_factory=dict)


def spark_udf(
    spark: Any,
    model_uri: str | os.PathLike[str],
    result_type: Any = None,
    env_manager: str = "local",
    params: dict[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Any:
    """A Spark pandas UDF that predicts with the model at ``model_uri``, as MLflow's does.

    Call it with columns (named or ``Column``), mapped by position to the signature's inputs
    (positional names ``0``, ``1``... without a signature), or with one struct column, or with
    none to take the signature's columns by name. ``result_type`` is a Spark ``DataType`` or a
    DDL string (``"double"``, ``"array<double>"``, ``"a long, b string"``); by default the
    signature's output (one column: its type; several: a struct), else ``double``. ``params``
    are checked against the signature's params (their defaults filled in). ``extra_env`` is set
    for the model in the workers. ``env_manager`` is ``local`` (this interpreter's packages)
    or ``uv``, ``virtualenv``, ``conda`` (the model's rebuilt environment, see the module doc).
    """
    from envkit.models.enforcement import enforce_params
    from envkit.models.model import Model
    from envkit.models.uri import resolve_model_uri

    if env_manager not in ENV_MANAGERS:
        raise UsageError(
            f"env_manager must be one of {', '.join(ENV_MANAGERS)}, not {env_manager!r}"
        )
    model_dir = resolve_model_uri(model_uri)
    meta = Model.load(model_dir)
    if "python_function" not in meta.flavors:
        raise UsageError("the model has no python_function flavor: spark_udf cannot predict")
    params = enforce_params(params, meta.get_params_schema())
    _check_json(params)
    extra = {str(k): str(v) for k, v in (extra_env or {}).items()}
    if env_manager != "local":
        _provision(model_dir, env_manager).close()  # fails here, before a job runs
    archive, digest = _ship_model(spark, model_dir)
    names, required = _input_names(meta.get_input_schema())
    spec = _UdfSpec(archive, digest, env_manager, names, required, params, extra)
    rtype = _result_type(spark, result_type, meta.get_output_schema())
    return _pandas_udf(spec, rtype)


def _check_json(params: dict[str, Any] | None) -> None:
    try:
        json.dumps(params)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"spark_udf params must be JSON values: {exc}")


def _input_names(schema: Any) -> tuple[tuple[str, ...] | None, int]:
    if schema is None or not schema.has_input_names():
        return None, 0
    names = tuple(str(n) for n in schema.input_names())
    return names, len(schema.required_input_names())


# --- the model, shipped to the workers ------------------------------------------------------------


def _ship_model(spark: Any, model_dir: Path) -> tuple[str, str]:
    """Zip the model and hand it to Spark (``addFile``); its file name and content digest."""
    staging = Path(tempfile.mkdtemp(prefix="envkit-spark-"))
    tmp = staging / "model.zip"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(model_dir).as_posix())
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]
    shipped = staging / f"envkit-model-{digest}.zip"
    tmp.rename(shipped)
    spark.sparkContext.addFile(str(shipped))
    return shipped.name, digest


def _local_model_dir(spec: _UdfSpec) -> Path:
    """The shipped model, extracted once per host (atomically: a sibling, then a rename)."""
    from pyspark import SparkFiles

    root = Path(tempfile.gettempdir()) / f"envkit-spark-{os.getuid()}"
    target = root / spec.digest
    if (target / "MLmodel").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    with zipfile.ZipFile(SparkFiles.get(spec.archive)) as archive:
        archive.extractall(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another worker published it first
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return target


# --- types ----------------------------------------------------------------------------------------


def _result_type(spark: Any, result_type: Any, output_schema: Any) -> Any:
    from pyspark.sql.types import DataType, DoubleType

    if isinstance(result_type, DataType):
        return result_type
    if isinstance(result_type, str):
        return _parse_ddl(spark, result_type)
    if result_type is not None:
        raise UsageError(
            f"result_type must be a Spark DataType or a DDL string, not {result_type!r}"
        )
    if output_schema is None:
        return DoubleType()
    return _schema_to_spark(output_schema)


def _parse_ddl(spark: Any, text: str) -> Any:
    from pyspark.sql.types import _parse_datatype_string

    try:
        return _parse_datatype_string(text)
    except Exception as exc:  # pyspark raises its own ParseException types
        raise UsageError(f"result_type {text!r} is not a Spark type: {str(exc).splitlines()[0]}")


_SPARK_TYPES = {
    "boolean": "BooleanType",
    "integer": "IntegerType",
    "long": "LongType",
    "float": "FloatType",
    "double": "DoubleType",
    "string": "StringType",
    "binary": "BinaryType",
    "datetime": "TimestampType",
}
_NUMPY_TO_SIGNATURE = {
    "bool": "boolean",
    "int32": "integer",
    "int64": "long",
    "float32": "float",
    "float64": "double",
}


def _spark_type(data_type: Any) -> Any:
    """The Spark type of a signature column type (a DataType or an Array of one)."""
    from pyspark.sql import types as T

    from envkit.models.types import Array, DataType

    if isinstance(data_type, DataType) and data_type.name in _SPARK_TYPES:
        return getattr(T, _SPARK_TYPES[data_type.name])()
    if isinstance(data_type, Array):
        return T.ArrayType(_spark_type(data_type.dtype))
    raise UsageError(
        f"the signature's output type {data_type!r} has no Spark type: give result_type"
    )


def _schema_to_spark(schema: Any) -> Any:
    """The Spark type of an output schema: one column's type, or a struct of named columns."""
    from pyspark.sql import types as T

    if schema.is_tensor_spec():
        spec = schema.inputs[0]
        name = _NUMPY_TO_SIGNATURE.get(str(spec.type))
        if name is None:
            raise UsageError(f"the signature's output tensor {spec.type} has no Spark type")
        element = getattr(T, _SPARK_TYPES[name])()
        return element if len(spec.shape) <= 1 else T.ArrayType(element)
    if len(schema.inputs) == 1:
        return _spark_type(schema.inputs[0].type)
    if not schema.has_input_names():
        raise UsageError("the signature's output has several unnamed columns: give result_type")
    return T.StructType([T.StructField(str(c.name), _spark_type(c.type)) for c in schema.inputs])


_NUMPY_DTYPES = {
    "BooleanType": "bool",
    "ByteType": "int8",
    "ShortType": "int16",
    "IntegerType": "int32",
    "LongType": "int64",
    "FloatType": "float32",
    "DoubleType": "float64",
}


def _column(values: Any, rtype: Any) -> Any:
    """One result column (a pandas Series) as the Spark type ``rtype`` wants it."""
    import numpy as np
    import pandas as pd
    from pyspark.sql.types import ArrayType, StringType, StructType, TimestampType

    series = pd.Series(values).reset_index(drop=True)
    name = type(rtype).__name__
    if name in _NUMPY_DTYPES:
        return series.astype(_NUMPY_DTYPES[name])
    if isinstance(rtype, StringType):
        return series.map(lambda v: None if v is None else str(v)).astype(object)
    if isinstance(rtype, TimestampType):
        return pd.to_datetime(series)
    if isinstance(rtype, ArrayType):
        element = rtype.elementType
        return series.map(lambda v: None if v is None else _elements(np.asarray(v), element))
    if isinstance(rtype, StructType):
        raise UsageError("a struct result needs the model to return named columns")
    return series


def _elements(values: Any, element: Any) -> list[Any]:
    """An array value's elements as the Spark ``element`` type wants them."""
    from pyspark.sql.types import StringType

    name = type(element).__name__
    if name in _NUMPY_DTYPES:
        return values.ravel().astype(_NUMPY_DTYPES[name]).tolist()
    if isinstance(element, StringType):
        return [None if v is None else str(v) for v in values.ravel().tolist()]
    return values.ravel().tolist()


def to_result(frame: Any, rtype: Any) -> Any:
    """Predictions (a DataFrame of :func:`~envkit.integrations.spark_worker.predictions_frame`)
    as the UDF's result for ``rtype``: a struct's fields by name, an array per row (one list
    column, or the row's values), else the first column."""
    import pandas as pd
    from pyspark.sql.types import ArrayType, StructType

    if isinstance(rtype, StructType):
        missing = [f.name for f in rtype.fields if f.name not in frame.columns]
        if missing:
            raise ModelFailedError(
                f"the model's output has no column {', '.join(missing)} of result_type "
                f"{rtype.simpleString()} (it has {', '.join(frame.columns)})"
            )
        return pd.DataFrame({f.name: _column(frame[f.name], f.dataType) for f in rtype.fields})
    if isinstance(rtype, ArrayType) and len(frame.columns) > 1:
        return _column(list(frame.to_numpy()), rtype)
    return _column(frame.iloc[:, 0], rtype)


# --- the UDF --------------------------------------------------------------------------------------


def _pandas_udf(spec: _UdfSpec, rtype: Any) -> Any:
    from typing import Tuple, Union  # noqa: UP035 (pyspark reads these hints)

    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import StructType

    def predict(batches: Iterator[Any]) -> Iterator[Any]:
        predictor = _predictor(spec)
        for args in batches:
            frame = _input_frame(args if isinstance(args, tuple) else (args,), spec)
            yield to_result(predictor(frame), rtype)

    returns: Any = Iterator[pd.DataFrame] if isinstance(rtype, StructType) else Iterator[pd.Series]
    predict.__annotations__ = {
        "batches": Iterator[Tuple[Union[pd.Series, pd.DataFrame], ...]],  # noqa: UP006
        "return": returns,
    }
    udf = pandas_udf(predict, rtype)  # type: ignore[call-overload]

    @functools.wraps(udf)
    def udf_with_default_columns(*args: Any) -> Any:
        if args:
            return udf(*args)
        if spec.input_names is None:
            raise UsageError(
                "the model's signature names no input columns: call the UDF with the columns"
            )
        return udf(*spec.input_names)

    return udf_with_default_columns


def _input_frame(args: tuple[Any, ...], spec: _UdfSpec) -> Any:
    """The model's input: a struct column's fields, or the columns named by the signature."""
    import pandas as pd

    if len(args) == 1 and isinstance(args[0], pd.DataFrame):
        return args[0]
    names = spec.input_names
    if names is None:
        names = tuple(str(i) for i in range(len(args)))
    if len(args) < spec.required:
        raise ModelFailedError(
            f"the UDF got {len(args)} column(s) but the model's signature requires "
            f"{spec.required} ({', '.join(names[: spec.required])})"
        )
    args = args[: len(names)]
    return pd.DataFrame({names[i]: col.reset_index(drop=True) for i, col in enumerate(args)})


def _predictor(spec: _UdfSpec) -> Any:
    """predict(frame) -> predictions DataFrame, for this Python worker (made once)."""
    from envkit.integrations.spark_worker import predictions_frame

    model_dir = _local_model_dir(spec)
    if spec.env_manager == "local":
        model = _local_model(str(model_dir))

        def predict(frame: Any) -> Any:
            with _environ(spec.extra_env):
                return predictions_frame(model.predict(frame, params=spec.params))

        return predict
    return _model_process(str(model_dir), spec.env_manager, spec.params, spec.extra_env).predict


@functools.cache
def _local_model(model_dir: str) -> Any:
    from envkit.pyfunc.loading import load_model

    return load_model(model_dir, suppress_warnings=True)


class _environ:
    """``extra_env`` set in ``os.environ`` while the model predicts (local)."""

    def __init__(self, extra: Mapping[str, str]) -> None:
        self.extra = extra
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in self.extra}
        os.environ.update(self.extra)

    def __exit__(self, *_exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- the model's process in its environment ------------------------------------------------


def _provision(model_dir: Path, env_manager: str) -> Any:
    """The model's environment with the Arrow transport (pyarrow, pandas) when it lacks it:
    from the cache, or built into it under the cache's lock."""
    from envkit.sandbox.provision import ProvisionOptions, provision
    from envkit.sandbox.spec import read_env_spec

    recorded = read_env_spec(model_dir, env_manager=env_manager).requirement_map()
    overrides = tuple(req for name, req in _TRANSPORT_REQUIREMENTS.items() if name not in recorded)
    options = ProvisionOptions(env_manager=env_manager, overrides=overrides, build_timeout=None)
    return provision(model_dir, options)


class _ModelProcess:
    """The model loaded once in a process of its environment, fed Arrow batches over pipes."""

    def __init__(
        self, model_dir: str, env_manager: str, params: Any, extra_env: Mapping[str, str]
    ) -> None:
        from envkit._subprocess import die_with_parent
        from envkit.sandbox.backends.base import child_environment

        ready = _provision(Path(model_dir), env_manager)
        env = ready.environment
        child_env = child_environment(extra_env)
        child_env["VIRTUAL_ENV"] = str(env.path)
        # python_flags holds -B: the cached environment stays as built (python -I ignores
        # PYTHONDONTWRITEBYTECODE); bytecode written into it would make the next worker's
        # cache check rebuild it.
        argv = [str(env.python), *env.python_flags, "-m", _WORKER_MODULE, model_dir]
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (read when the process dies)
        self.process = subprocess.Popen(
            [*argv, json.dumps(params)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=child_env,
            cwd=model_dir,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
        atexit.register(self.close)
        self._answer("loading the model")

    def predict(self, frame: Any) -> Any:
        from envkit.integrations.spark_worker import from_arrow, to_arrow, write_frame

        try:
            write_frame(self.process.stdin, b"D", to_arrow(frame))  # type: ignore[arg-type]
        except (BrokenPipeError, OSError):
            pass  # the process is gone: _answer says why
        return from_arrow(self._answer("predicting"))

    def _answer(self, doing: str) -> bytes:
        from envkit.integrations.spark_worker import ERROR, read_frame

        frame = read_frame(self.process.stdout)  # type: ignore[arg-type]
        if frame is None:
            code = self.process.wait()
            raise ModelFailedError(
                f"the model's process in its environment exited with status {code} while "
                f"{doing}: {self._last_error_line()}"
            )
        kind, payload = frame
        if kind == ERROR:
            raise ModelFailedError(payload.decode("utf-8", "replace"))
        return payload

    def _last_error_line(self) -> str:
        self.stderr.seek(0)
        lines = [ln for ln in self.stderr.read().decode("utf-8", "replace").splitlines() if ln]
        return lines[-1].strip() if lines else "no output"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # type: ignore[union-attr]
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


_PROCESSES: dict[tuple[str, str], _ModelProcess] = {}


def _model_process(
    model_dir: str, env_manager: str, params: Any, extra_env: Mapping[str, str]
) -> _ModelProcess:
    """This Python worker's process for the model (started on first use, then reused)."""
    key = (model_dir, json.dumps([env_manager, params, sorted(extra_env.items())]))
    process = _PROCESSES.get(key)
    if process is None or process.process.poll() is not None:
        process = _ModelProcess(model_dir, env_manager, params, extra_env)
        _PROCESSES[key] = process
    return process
