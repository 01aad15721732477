"""The ``spark`` flavor: a ``pyspark.ml`` ``PipelineModel``, file-compatible with ``mlflow.spark``.

    import envkit.spark

    envkit.spark.save_model(pipeline_model, "spark_model", input_example=pdf.head(3))
    model = envkit.spark.load_model("spark_model")       # the PipelineModel (active session)
    pyfunc = envkit.pyfunc.load_model("spark_model")     # pandas in, predictions out

The layout is MLflow's: the Spark ML persistence of the pipeline in ``sparkml/``, and a
``spark`` flavor section with ``pyspark_version``, ``model_data`` (``sparkml``) and
``model_class``. The pyfunc uses the active SparkSession, or starts a local one when loaded
outside Spark. Spark runs on a JVM: the model records the Java major version it was saved with
(``java_major_version`` in the flavor section), and ``envkit validate`` checks that a JVM of at
least that version is there before it builds anything (exit 3 otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "spark"
LOADER_MODULE = "envkit.spark"
MODEL_DATA = "sparkml"
JAVA_KEY = "java_major_version"

__all__ = ["FLAVOR_NAME", "load_model", "log_model", "save_model"]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _pyspark() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("pyspark", flavor=FLAVOR_NAME)


def _active_session() -> Any:
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def local_session() -> Any:
    """The active SparkSession, or a small local one (loopback only, no UI) when there is none:
    what a spark model loaded outside Spark (a sandbox, a scoring server) runs in."""
    session = _active_session()
    if session is not None:
        return session
    import tempfile

    from pyspark.sql import SparkSession

    # The JVM's scratch space where Python's is ($TMPDIR: a sandbox's only writable place).
    scratch = tempfile.gettempdir()
    return (
        SparkSession.builder.master("local[1]")
        .config("spark.local.dir", scratch)
        .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={scratch}")
        .appName("envkit-spark-model")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )


def java_major_version(session: Any) -> int:
    """The major version of the JVM ``session`` runs on (8 for Java 1.8)."""
    spec = str(session.sparkContext._jvm.java.lang.System.getProperty("java.specification.version"))
    return int(spec.split(".")[1] if spec.startswith("1.") else spec.split(".")[0])


def save_model(
    spark_model: Any,
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
    """Save a ``pyspark.ml`` model (a ``PipelineModel``, or a fitted transformer that is wrapped
    in one, as MLflow does) as an MLflow Model directory at ``path``; needs an active
    SparkSession (the one that fitted the model)."""
    from envkit._version import __version__
    from envkit.deps.envfiles import pin_installed
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    pyspark = _pyspark()
    from pyspark.ml import PipelineModel, Transformer

    if not isinstance(spark_model, Transformer):
        raise UsageError(
            f"envkit.spark saves a fitted pyspark.ml model, not a {type(spark_model).__name__}"
        )
    if not isinstance(spark_model, PipelineModel):
        spark_model = PipelineModel([spark_model])
    session = _active_session()
    if session is None:
        raise UsageError("saving a Spark model needs an active SparkSession")
    java = java_major_version(session)

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        # Spark writes through Hadoop's file system: a local path, written in place.
        spark_model.write().overwrite().save(str(staging / MODEL_DATA))
        _drop_checksums(staging / MODEL_DATA)
        model.add_flavor(
            "python_function", loader_module=LOADER_MODULE, data=MODEL_DATA, code=code_dir
        )
        model.add_flavor(
            FLAVOR_NAME,
            pyspark_version=pyspark.__version__,
            model_data=MODEL_DATA,
            code=code_dir,
            model_class=f"{type(spark_model).__module__}.{type(spark_model).__qualname__}",
            **{JAVA_KEY: java},
        )

    def default_requirements() -> list[str]:
        return [f"envkit=={__version__}", pin_installed("pyspark"), pin_installed("pandas")]

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=default_requirements,
            pyfunc_impl=lambda staging: _SparkModelWrapper(session, spark_model),
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


def _drop_checksums(directory: Path) -> None:
    """Hadoop's ``.crc`` side files: not part of the model (MLflow's copy drops them too)."""
    for crc in directory.rglob(".*.crc"):
        crc.unlink()


def log_model(
    spark_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``spark_model`` into the active run (:func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, spark_model=spark_model, **kwargs)


def load_model(model_uri: str | os.PathLike[str]) -> Any:
    """Load the ``PipelineModel`` of the model at ``model_uri`` (in the active SparkSession, or
    a local one)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    _pyspark()
    opened = open_flavor(model_uri, FLAVOR_NAME)
    local_session()
    return _load_pipeline(opened.file("model_data", MODEL_DATA))


def _load_pipeline(path: Path) -> Any:
    from pyspark.ml import PipelineModel

    return PipelineModel.load(str(path))


class _SparkModelWrapper:
    """pyfunc adapter: a pandas DataFrame in, the pipeline's ``prediction`` column out."""

    def __init__(self, session: Any, spark_model: Any) -> None:
        self.session = session
        self.spark_model = spark_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        result = self.spark_model.transform(self.session.createDataFrame(frame))
        return [row.prediction for row in result.select("prediction").collect()]

    def get_raw_model(self) -> Any:
        return self.spark_model


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _SparkModelWrapper:
    """Loader contract (also for models MLflow wrote with ``mlflow.spark``): ``path`` is the
    model's ``sparkml`` directory (or the model directory)."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    _pyspark()
    target = Path(path)
    if (target / "MLmodel").is_file():
        opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
        target = opened.file_named(opened.conf.get("model_data", MODEL_DATA))
    session = local_session()
    return _SparkModelWrapper(session, _load_pipeline(target))
