"""envkit.pyfunc.spark_udf on a real Spark (pyspark from PyPI, this machine's Java).

local[2] shares the session's SparkSession; the env-manager test runs a local-cluster job in a
subprocess of its own (separate executor JVMs and Python workers), on a model made with a
scikit-learn release that is not the one installed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
from spark_helpers import SPARK_WARNINGS

pytestmark = [pytest.mark.slow, *SPARK_WARNINGS]

REPO = Path(__file__).resolve().parents[2]
OLD_SKLEARN = "1.5.2"  # a release other than this interpreter's, with wheels for 3.9-3.13
OLD_STACK = [f"scikit-learn=={OLD_SKLEARN}", "numpy==2.0.2", "pandas==2.2.3"]


@pytest.fixture(scope="session")
def iris_frame():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sl", "sw", "pl", "pw"]
    return X, y


@pytest.fixture(scope="session")
def local_iris_model(tmp_path_factory, iris_frame):
    """An iris classifier saved with this interpreter's scikit-learn, with a signature."""
    from sklearn.linear_model import LogisticRegression

    import envkit.sklearn

    X, y = iris_frame
    clf = LogisticRegression(max_iter=300).fit(X, y)
    path = tmp_path_factory.mktemp("spark") / "iris"
    envkit.sklearn.save_model(clf, path, input_example=X.head(3))
    return path, clf.predict(X)


def _code_model(root: Path, name: str, predict: str, **save: object) -> Path:
    """A models-from-code pyfunc whose predict body is ``predict``."""
    import envkit.pyfunc

    code = root / f"{name}_code.py"
    body = textwrap.indent(textwrap.dedent(predict).strip(), " " * 8)
    code.write_text(
        "import os\nimport pandas as pd\nimport envkit.models\nimport envkit.pyfunc\n\n\n"
        "class Model(envkit.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        f"{body}\n\n\nenvkit.models.set_model(Model())\n",
        encoding="utf-8",
    )
    envkit.pyfunc.save_model(root / name, python_model=str(code), **save)
    return root / name


@pytest.mark.timeout(600)
def test_local_udf_takes_columns_by_name_by_position_and_as_a_struct(
    spark, local_iris_model, iris_frame
):
    from pyspark.sql.functions import struct

    import envkit.pyfunc

    path, expected = local_iris_model
    X, _ = iris_frame
    df = spark.createDataFrame(X)
    udf = envkit.pyfunc.spark_udf(spark, str(path))  # long, from the signature's output
    as_text = envkit.pyfunc.spark_udf(spark, path.as_uri(), result_type="string")
    out = df.select(
        udf().alias("by_name"),
        udf("sl", "sw", "pl", "pw").alias("by_position"),
        udf(struct("sl", "sw", "pl", "pw")).alias("struct"),
        as_text("sl", "sw", "pl", "pw").alias("text"),
    ).toPandas()
    assert dict(df.select(udf().alias("p")).dtypes)["p"] == "bigint"
    assert out["by_name"].tolist() == expected.tolist()
    assert out["by_position"].tolist() == expected.tolist()
    assert out["struct"].tolist() == expected.tolist()
    assert out["text"].tolist() == [str(v) for v in expected]


@pytest.mark.timeout(600)
def test_local_udf_result_types_params_and_extra_env(spark, tmp_path):
    import pandas as pd

    import envkit.pyfunc
    from envkit.errors import UsageError
    from envkit.models.signature import infer_signature

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    model = _code_model(
        tmp_path,
        "scaled",
        """
        k = (params or {}).get("k", 1.0)
        tag = os.environ.get("ENVKIT_TEST_TAG", "unset")
        return pd.DataFrame({"scaled": model_input["x"] * k, "tag": [tag] * len(model_input)})
        """,
        signature=infer_signature(
            frame, pd.DataFrame({"scaled": [1.0], "tag": ["a"]}), params={"k": 1.0}
        ),
        pip_requirements=[f"pandas=={version('pandas')}"],
    )
    df = spark.createDataFrame(frame)
    struct_udf = envkit.pyfunc.spark_udf(
        spark, str(model), params={"k": 2.0}, extra_env={"ENVKIT_TEST_TAG": "from-udf"}
    )
    array_udf = envkit.pyfunc.spark_udf(spark, str(model), result_type="array<string>")
    out = df.select(struct_udf().alias("s"), array_udf("x").alias("a")).toPandas()
    assert [row["scaled"] for row in out["s"]] == [2.0, 4.0, 6.0]  # params reach the model
    assert {row["tag"] for row in out["s"]} == {"from-udf"}
    assert list(out["a"][0]) == ["1.0", "unset"]  # the row's values, default params
    with pytest.raises(UsageError, match="env_manager"):
        envkit.pyfunc.spark_udf(spark, str(model), env_manager="docker")
    with pytest.raises(UsageError, match="not a Spark type"):
        envkit.pyfunc.spark_udf(spark, str(model), result_type="no such type<")


@pytest.fixture(scope="session")
def old_sklearn_model(tmp_path_factory, venv_factory) -> tuple[Path, list[int]]:
    """An iris classifier made and saved in a virtualenv with scikit-learn OLD_SKLEARN (the
    model records it), and its predictions there."""
    python = venv_factory(
        "sklearn-old",
        [*OLD_STACK, f"cloudpickle=={version('cloudpickle')}", "PyYAML", "packaging", "picklescan"],
    )
    root = tmp_path_factory.mktemp("old-sklearn")
    script = f"""
        import json, sys
        import sklearn
        from sklearn.datasets import load_iris
        from sklearn.tree import DecisionTreeClassifier
        import envkit.sklearn

        X, y = load_iris(return_X_y=True, as_frame=True)
        X.columns = ["sl", "sw", "pl", "pw"]
        clf = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
        reqs = {OLD_STACK!r} + ["cloudpickle==" + __import__("cloudpickle").__version__]
        envkit.sklearn.save_model(clf, sys.argv[1], input_example=X.head(3),
                                  pip_requirements=reqs)
        json.dump([int(v) for v in clf.predict(X)], open(sys.argv[2], "w"))
        assert sklearn.__version__ == {OLD_SKLEARN!r}
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [str(python), "-c", textwrap.dedent(script), str(root / "model"), str(root / "y.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "model", json.loads((root / "y.json").read_text())


_CLUSTER_JOB = """
import json, sys
sys.path.insert(0, sys.argv[1])
from spark_helpers import spark_session_builder
import envkit.pyfunc
from sklearn.datasets import load_iris

model, broken, out = sys.argv[2:5]
builder = spark_session_builder("local-cluster[2,1,1024]")
spark = builder.config("spark.task.maxFailures", "1").getOrCreate()  # a failure fails once
spark.sparkContext.setLogLevel("ERROR")
X, _ = load_iris(return_X_y=True, as_frame=True)
X.columns = ["sl", "sw", "pl", "pw"]
df = spark.createDataFrame(X).repartition(4)
udf = envkit.pyfunc.spark_udf(spark, model, env_manager="uv")
rows = df.select(udf().alias("p"), "sl", "sw", "pl", "pw").collect()
executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1  # (the driver)
result = {"rows": [[r.p, r.sl, r.sw, r.pl, r.pw] for r in rows], "executors": executors}
try:
    df.select(envkit.pyfunc.spark_udf(spark, broken, env_manager="uv")("sl")).collect()
    result["broken"] = None
except Exception as exc:
    result["broken"] = str(exc)
json.dump(result, open(out, "w"))
spark.stop()
"""


@pytest.mark.timeout(1200)
def test_env_manager_runs_the_model_in_its_own_environment_on_executors(
    old_sklearn_model, shared_cache, tmp_path, iris_frame
):
    """local-cluster: two executor JVMs; each Python worker provisions the model's
    environment (scikit-learn OLD_SKLEARN, not this interpreter's) through the shared cache
    and predicts there; a model that cannot load there fails the task with envkit's reason."""
    from sklearn import __version__ as here

    assert here != OLD_SKLEARN
    model, expected = old_sklearn_model
    broken = _code_model(
        tmp_path,
        "broken",
        "return model_input",
        pip_requirements=[f"pandas=={version('pandas')}"],
    )
    # Its code imports a module that its environment does not have: it loads on no executor.
    code = broken / "broken_code.py"
    code.write_text("import ektest_not_installed\n" + code.read_text(), encoding="utf-8")
    X, _ = iris_frame
    env = {**os.environ, "ENVKIT_HOME": str(shared_cache), "PYTHONPATH": str(REPO)}
    out = tmp_path / "out.json"
    args = [str(REPO / "tests"), str(model), str(broken), str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", _CLUSTER_JOB, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=1100,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    by_features = {tuple(r[1:]): r[0] for r in result["rows"]}
    wanted = {tuple(f): y for f, y in zip(X.to_numpy().tolist(), expected)}
    assert by_features == wanted
    assert result["executors"] == 2  # executor JVMs of their own, with their Python workers
    assert "No module named 'ektest_not_installed'" in result["broken"]
    assert "loading the model failed" in result["broken"]
