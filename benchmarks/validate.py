"""``envkit validate`` vs ``mlflow models predict``: rebuilding an environment and predicting.

Prints figures (never asserts): medians of N runs, side by side, on the iris scikit-learn
pipeline (StandardScaler + LogisticRegression):

* envkit first  ``envkit validate`` with an empty ENVKIT_HOME (uv's cache warm, as for
                MLflow), on the model saved by envkit and on the same model saved by MLflow;
* envkit cold   the environment removed and rebuilt, envkit's bytecode store kept (the
                compiled code of the files envkit has seen, as uv keeps its wheels);
* envkit warm   the same command again (cache hit);
                (the MLflow-saved model is loaded with ``--loader auto``: envkit's loader for
                ``mlflow.sklearn``, MLflow installed as the model pins it but not imported; the
                report's loader is printed; warm and cold are also given as a ratio to MLflow uv
                on that same model)
* MLflow uv     ``mlflow models predict --env-manager uv`` on the MLflow-saved model (MLflow
                builds a fresh environment on every call);
* MLflow virtualenv  one attempt: it needs pyenv to install the recorded CPython, which
                downloads it, so it fails where only package indexes are reachable.

MLflow runs from its own virtualenv (built like ``tests/conftest.py::mlflow_python``).

    python benchmarks/validate.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mlflow_python() -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import mlflow_venv_python

    return mlflow_venv_python()


def make_models(workdir: Path, mlflow_py: Path) -> tuple[Path, Path, Path]:
    """(envkit-saved model, MLflow-saved model, serving payload), the same fitted pipeline."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import envkit.sklearn

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
    ours = workdir / "iris_envkit"
    envkit.sklearn.save_model(model, ours, input_example=X.head(3))
    theirs = workdir / "iris_mlflow"
    script = (
        "import sys, mlflow.sklearn\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n"
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        "m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)\n"
        "mlflow.sklearn.save_model(m, sys.argv[1], input_example=X.head(3))\n"
    )
    subprocess.run([str(mlflow_py), "-c", script, str(theirs)], check=True, capture_output=True)
    payload = workdir / "payload.json"
    payload.write_text(
        json.dumps({"dataframe_split": json.loads(X.head(3).to_json(orient="split"))})
    )
    return ours, theirs, payload


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    return time.perf_counter() - start, proc


def envkit_runs(model: Path, runs: int, label: str) -> dict[str, list[float]]:
    """Cold, warm and rebuilt ``envkit validate`` runs (default ``--loader auto``: envkit's
    loader for the MLflow-saved model too, MLflow installed as recorded but not imported)."""
    cold: list[float] = []
    warm: list[float] = []
    rebuilt: list[float] = []
    details: list[str] = []
    loaders: set[str] = set()
    for _ in range(runs):
        home = Path(tempfile.mkdtemp(prefix="envkit-bench-home-"))
        env = dict(os.environ, ENVKIT_HOME=str(home))
        argv = [sys.executable, "-m", "envkit", "validate", str(model), "--format", "json"]
        try:
            seconds, proc = timed(argv, env)
            if proc.returncode != 0:
                raise SystemExit(f"envkit cold run failed ({label}):\n{proc.stdout}\n{proc.stderr}")
            report = json.loads(proc.stdout)
            assert report["cache"]["hit"] is False
            cold.append(seconds)
            loaders.add(str(report.get("loader")))
            t = report["timings"]
            details.append(
                f"install {t.get('install', 0):.2f}s load {t.get('load', 0):.2f}s "
                f"input {t.get('input', 0):.2f}s predict {t.get('predict', 0):.2f}s"
            )
            seconds, proc = timed(argv, env)
            report = json.loads(proc.stdout)
            assert proc.returncode == 0 and report["cache"]["hit"] is True
            warm.append(seconds)
            # The environment removed, envkit's bytecode store kept (as uv's cache is kept).
            shutil.rmtree(home / "envs")
            seconds, proc = timed(argv, env)
            report = json.loads(proc.stdout)
            assert proc.returncode == 0 and report["cache"]["hit"] is False
            rebuilt.append(seconds)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    print(f"  {label}: cold runs {_fmt(cold)}; warm runs {_fmt(warm)}; rebuilt {_fmt(rebuilt)}")
    print(f"    cold breakdown: {' | '.join(details)}; loader: {', '.join(sorted(loaders))}")
    return {"cold": cold, "warm": warm, "rebuilt": rebuilt}


def mlflow_runs(
    mlflow_py: Path, model: Path, payload: Path, manager: str, runs: int
) -> list[float]:
    mlflow_cli = mlflow_py.parent / "mlflow"
    env = dict(os.environ)
    env["PATH"] = f"{mlflow_py.parent}{os.pathsep}{env.get('PATH', '')}"
    times = []
    for _ in range(runs):
        seconds, proc = timed(
            [
                str(mlflow_cli),
                "models",
                "predict",
                "-m",
                str(model),
                "-i",
                str(payload),
                "-t",
                "json",
                "--env-manager",
                manager,
            ],
            env,
        )
        if proc.returncode != 0:
            last = [line for line in proc.stderr.strip().splitlines() if line.strip()][-3:]
            print(f"  MLflow {manager}: FAILED after {seconds:.1f}s: " + " / ".join(last)[:600])
            return []
        times.append(seconds)
    print(f"  MLflow {manager}: runs {_fmt(times)}")
    return times


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}s" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = max(1, args.runs)
    print(f"envkit validate vs mlflow models predict, iris pipeline, {runs} runs each")
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    mlflow_py = mlflow_python()
    with tempfile.TemporaryDirectory(prefix="envkit-bench-") as tmp:
        ours, theirs, payload = make_models(Path(tmp), mlflow_py)
        print("running:")
        ek = envkit_runs(ours, runs, "envkit, envkit-saved model")
        ek_mlflow = envkit_runs(theirs, runs, "envkit, MLflow-saved model (--loader auto)")
        mf_uv = mlflow_runs(mlflow_py, theirs, payload, "uv", runs)
        mlflow_runs(mlflow_py, theirs, payload, "virtualenv", 1)

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    print()
    print(f"{'median of ' + str(runs) + ' runs':<60}{'seconds':>9}")
    rows = [
        ("envkit validate, first ever (empty ENVKIT_HOME)", med(ek["cold"])),
        ("envkit validate, cold (env rebuilt, bytecode store kept)", med(ek["rebuilt"])),
        ("envkit validate, warm (cache hit)", med(ek["warm"])),
        ("envkit validate MLflow-saved model, first ever", med(ek_mlflow["cold"])),
        ("envkit validate MLflow-saved model, cold (env rebuilt)", med(ek_mlflow["rebuilt"])),
        ("envkit validate MLflow-saved model, warm (cache hit)", med(ek_mlflow["warm"])),
        ("mlflow models predict --env-manager uv (every call)", med(mf_uv)),
    ]
    for label, value in rows:
        print(f"{label:<60}{value:>9.2f}")
    print()
    mlflow_uv = med(mf_uv)
    if mf_uv:
        cold = med(ek["rebuilt"])
        print(f"cold / MLflow-uv:            {cold / mlflow_uv:.2f}x   (target <= 0.5x)")
        print(f"first ever / MLflow-uv:      {med(ek['cold']) / mlflow_uv:.2f}x")
        print(f"MLflow-uv / warm:            {mlflow_uv / med(ek['warm']):.1f}x    (target >= 5x)")
        # The same MLflow-written model on both sides (issue 14: warm <= 0.2x, cold <= 0.5x).
        print(
            f"MLflow-saved, warm / MLflow-uv:  {med(ek_mlflow['warm']) / mlflow_uv:.2f}x   "
            "(target <= 0.2x)"
        )
        print(
            f"MLflow-saved, cold / MLflow-uv:  {med(ek_mlflow['rebuilt']) / mlflow_uv:.2f}x   "
            "(target <= 0.5x)"
        )
        print(f"MLflow-saved, first ever / MLflow-uv: {med(ek_mlflow['cold']) / mlflow_uv:.2f}x")
    print(f"warm:                        {med(ek['warm']):.2f}s  (target <= 2.5s)")


if __name__ == "__main__":
    main()
