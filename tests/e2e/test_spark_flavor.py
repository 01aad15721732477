"""The spark flavor: a pyspark.ml PipelineModel saved in MLflow's layout, its pyfunc, the Java
it records (and ``envkit validate`` checking it), and MLflow interop both ways."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from java_check import assert_validate_exits_3_without_the_java
from spark_helpers import SPARK_WARNINGS

pytestmark = [pytest.mark.slow, *SPARK_WARNINGS]


def _iris(spark):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    pdf = X.iloc[:, :2].set_axis(["a", "b"], axis=1).assign(label=y.astype(float))
    return pdf, spark.createDataFrame(pdf)


@pytest.fixture(scope="session")
def spark_model(spark, tmp_path_factory):
    """A fitted VectorAssembler + LogisticRegression pipeline, saved with envkit.spark; its
    predictions on the training rows."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    import envkit.spark

    pdf, df = _iris(spark)
    stages = [VectorAssembler(inputCols=["a", "b"], outputCol="features"), LogisticRegression()]
    fitted = Pipeline(stages=stages).fit(df)
    expected = [r.prediction for r in fitted.transform(df).select("prediction").collect()]
    path = tmp_path_factory.mktemp("spark-flavor") / "model"
    envkit.spark.save_model(fitted, path, input_example=pdf[["a", "b"]].head(3))
    return path, pdf[["a", "b"]], expected


@pytest.mark.timeout(600)
def test_save_load_and_pyfunc_in_mlflow_layout(spark, spark_model):
    import pyspark
    from pyspark.ml import PipelineModel

    import envkit.pyfunc
    import envkit.spark

    path, features, expected = spark_model
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    section = mlmodel["flavors"]["spark"]
    jvm = spark.sparkContext._jvm.java.lang.System.getProperty("java.specification.version")
    assert section["pyspark_version"] == pyspark.__version__
    assert section["model_data"] == "sparkml"
    assert section["model_class"] == "pyspark.ml.pipeline.PipelineModel"
    assert section["java_major_version"] == int(jvm)
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "envkit.spark"
    assert (path / "sparkml" / "metadata").is_dir() and (path / "sparkml" / "stages").is_dir()
    requirements = (path / "requirements.txt").read_text()
    assert f"pyspark=={pyspark.__version__}" in requirements
    assert isinstance(envkit.spark.load_model(path), PipelineModel)
    assert list(envkit.pyfunc.load_model(path).predict(features)) == expected


@pytest.mark.timeout(300)
def test_validate_exits_3_when_the_java_the_model_needs_is_missing(spark_model, tmp_path):
    """Checked before anything is built: a JVM too old and no JVM at all."""
    assert_validate_exits_3_without_the_java(spark_model[0], "spark", tmp_path, "runs on Java 99")


_MLFLOW_SPARK = """
import json, sys
import mlflow.pyfunc, mlflow.spark
from pyspark.sql import SparkSession
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import VectorAssembler

envkit_model, out = sys.argv[1:3]
spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
         .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
         .getOrCreate())
features = json.loads(sys.argv[3])
pdf = __import__("pandas").DataFrame(features)
df = spark.createDataFrame(pdf.assign(label=[float(i % 3) for i in range(len(pdf))]))
stages = [VectorAssembler(inputCols=["a", "b"], outputCol="features"), LogisticRegression()]
fitted = Pipeline(stages=stages).fit(df)
# (its requirements given: MLflow's inference would start one more JVM to load the model)
requirements = ["pyspark==" + __import__("pyspark").__version__]
mlflow.spark.save_model(
    fitted, out + "/mlflow-model", input_example=pdf.head(3), pip_requirements=requirements
)
result = {
    "mlflow_expected": [r.prediction for r in fitted.transform(df).select("prediction").collect()],
    "envkit_by_mlflow_spark": [
        r.prediction
        for r in mlflow.spark.load_model(envkit_model).transform(df).select("prediction").collect()
    ],
    "envkit_by_mlflow_pyfunc": [
        float(v) for v in mlflow.pyfunc.load_model(envkit_model).predict(pdf)
    ],
}
json.dump(result, open(out + "/result.json", "w"))
"""


@pytest.mark.mlflow
@pytest.mark.timeout(900)
def test_mlflow_interop_both_ways(spark, spark_model, run_in_mlflow, tmp_path, monkeypatch):
    """One MLflow subprocess: MLflow loads envkit's model (mlflow.spark and pyfunc) and saves
    one with mlflow.spark, which envkit then loads (envkit.spark and pyfunc)."""
    import envkit.pyfunc
    import envkit.spark

    path, features, expected = spark_model
    run_in_mlflow(
        _MLFLOW_SPARK,
        str(path),
        str(tmp_path),
        json.dumps(features.to_dict(orient="list")),
        with_envkit=True,
    )
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["envkit_by_mlflow_spark"] == expected
    assert result["envkit_by_mlflow_pyfunc"] == expected
    theirs = tmp_path / "mlflow-model"
    section = yaml.safe_load((theirs / "MLmodel").read_text())["flavors"]["spark"]
    assert section["model_data"] == "sparkml" and "pyspark_version" in section
    monkeypatch.setenv("ENVKIT_DEPENDENCY_MISMATCH", "ignore")  # (the two venvs' pyspark stacks)
    _, df = _iris(spark)
    loaded = envkit.spark.load_model(theirs)
    ours = [r.prediction for r in loaded.transform(df).select("prediction").collect()]
    assert ours == result["mlflow_expected"]
    assert list(envkit.pyfunc.load_model(theirs).predict(features)) == result["mlflow_expected"]


@pytest.mark.timeout(900)
def test_validate_and_serve_the_spark_model_in_its_rebuilt_environment(spark_model, shared_cache):
    """pyspark from the index in a fresh environment; the model's JVM starts in the sandbox
    (loopback up in its network namespace, scratch space in its work directory), and `envkit
    serve` answers what the pipeline predicts (its pyfunc starts a local Spark session in the
    server)."""
    from test_serve import Server, post_json

    import envkit

    path, features, expected = spark_model
    report = envkit.validate(path, cache_dir=shared_cache)
    assert report.ok, report.headline
    assert report.to_dict()["containment"]["network"]["held"]

    server = Server(path, env={**os.environ, "ENVKIT_HOME": str(shared_cache)})
    try:
        server.wait_ready(timeout=900)
        payload = {"dataframe_split": features.head(4).to_dict(orient="split")}
        status, body = post_json(server.port, payload)
        assert status == 200, body
        assert [float(p) for p in body["predictions"]] == expected[:4]
    finally:
        assert server.stop() == 0, server.output()
