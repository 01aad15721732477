"""Spark batch inference throughput: envkit's spark_udf with env_manager="uv" (the model in its
rebuilt environment, fed Arrow batches) against env_manager="local" (the model loaded in
Spark's Python workers) and against MLflow's spark_udf (env_manager="uv", and "local").

    python benchmarks/spark_udf.py [--rows 100000] [--repeat 3] [--no-mlflow]

Same model on both sides (an iris LogisticRegression trained on the same rows: envkit saves
it with envkit.sklearn, MLflow with mlflow.sklearn), local[2], 127.0.0.1 only. Each UDF runs
once untimed (environment from the cache or built, model loaded, Python workers started),
then ``--repeat`` timed runs; the best is reported as rows/s. MLflow runs in the test suite's
MLflow virtualenv (with pyspark); its "uv" environment installs from the package index.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

JOB = """
import json, os, sys, time
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from pyspark.sql import SparkSession

side, workdir, rows, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
X, y = load_iris(return_X_y=True, as_frame=True)
X.columns = ["sl", "sw", "pl", "pw"]
clf = LogisticRegression(max_iter=300).fit(X, y)
model = os.path.join(workdir, side + "-model")
if side == "envkit":
    import envkit.pyfunc, envkit.sklearn
    envkit.sklearn.save_model(clf, model, input_example=X.head(3))
    spark_udf = envkit.pyfunc.spark_udf
else:
    import mlflow.pyfunc, mlflow.sklearn
    mlflow.sklearn.save_model(clf, model, input_example=X.head(3))
    spark_udf = mlflow.pyfunc.spark_udf
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "2").config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
big = pd.concat([X] * (rows // len(X) + 1), ignore_index=True).head(rows)
df = spark.createDataFrame(big).repartition(2).cache()
df.count()
result = {}
for manager in ("local", "uv"):
    started = time.perf_counter()
    udf = spark_udf(spark, model, env_manager=manager)
    run = lambda: df.select(udf("sl", "sw", "pl", "pw").alias("p")).write.format(
        "noop").mode("overwrite").save()
    run()
    first = time.perf_counter() - started
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    result[manager] = {"rows_per_s": rows / min(times), "first_run_s": first}
print(json.dumps(result))
spark.stop()
"""


def mlflow_python() -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # the suite's shared, file-locked MLflow virtualenv (with pyspark)

    return conftest.mlflow_venv_python()


def run_side(python: str, side: str, rows: int, repeat: int) -> dict[str, dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if side == "envkit":
        env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory(prefix=f"bench-spark-{side}-") as workdir:
        proc = subprocess.run(
            [python, "-c", JOB, side, workdir, str(rows), str(repeat)],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true", help="envkit only")
    args = parser.parse_args()
    results = {"envkit": run_side(sys.executable, "envkit", args.rows, args.repeat)}
    if not args.no_mlflow:
        try:
            results["mlflow"] = run_side(str(mlflow_python()), "mlflow", args.rows, args.repeat)
        except RuntimeError as exc:  # e.g. its uv environment cannot be built offline
            print(f"MLflow's spark_udf did not run: {str(exc).splitlines()[0]}", file=sys.stderr)
    print(f"{args.rows} rows, local[2], best of {args.repeat}")
    print(f"{'side':8} {'env_manager':12} {'rows/s':>12} {'first run (s)':>14}")
    for side, managers in results.items():
        for manager, r in managers.items():
            print(f"{side:8} {manager:12} {r['rows_per_s']:12.0f} {r['first_run_s']:14.1f}")
    ours = results["envkit"]
    print(f"envkit uv / envkit local: {ours['uv']['rows_per_s'] / ours['local']['rows_per_s']:.2f}")
    if "mlflow" in results:
        theirs = results["mlflow"]
        for manager in ("uv", "local"):
            ratio = ours[manager]["rows_per_s"] / theirs[manager]["rows_per_s"]
            print(f"envkit {manager} / mlflow {manager}: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
