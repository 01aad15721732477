"""What requirement capture costs at save time, envkit side by side with MLflow.

Capture cost = median(save with inferred requirements) - median(save with explicit
``pip_requirements``), for the iris scikit-learn pipeline and for a custom pyfunc, without an
input example (so both tools only load the model in their capture process). MLflow runs in its
own virtualenv (``--mlflow-python``, default: the one the test suite builds), as a worker that
takes one round at a time, so the two tools alternate and share the machine's load.

    python benchmarks/capture.py [--repeat 7] [--mlflow-python PATH]

Target: envkit's capture costs at most 0.4x MLflow's.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TARGET_RATIO = 0.4

MLFLOW_WORKER = textwrap.dedent(
    """
    import json, logging, shutil, sys, tempfile, time
    import mlflow.pyfunc, mlflow.sklearn
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [2 * x for x in model_input]

    def sk(path, explicit):
        kw = {"pip_requirements": ["scikit-learn"]} if explicit else {}
        mlflow.sklearn.save_model(clf, path, **kw)

    def py(path, explicit):
        kw = {"pip_requirements": ["cloudpickle"]} if explicit else {}
        mlflow.pyfunc.save_model(path, python_model=Doubler(), **kw)

    root = tempfile.mkdtemp()
    n = 0
    print("ready", flush=True)
    for line in sys.stdin:
        result = {}
        for name, save in (("iris sklearn pipeline", sk), ("custom pyfunc", py)):
            for explicit in (True, False):
                n += 1
                path = f"{root}/m{n}"
                start = time.perf_counter()
                save(path, explicit)
                result[f"{name}|{'explicit' if explicit else 'inferred'}"] = (
                    time.perf_counter() - start
                )
                shutil.rmtree(path)
        print(json.dumps(result), flush=True)
    """
)


def find_mlflow_python() -> str | None:
    root = os.environ.get("ENVKIT_TEST_CACHE", str(Path.home() / ".cache" / "envkit-tests"))
    for candidate in sorted(glob.glob(os.path.join(root, "mlflow-*", "bin", "python"))):
        if Path(candidate).parent.parent.joinpath(".complete").exists():
            return candidate
    return None


class EnvkitRounds:
    def __init__(self) -> None:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        import envkit.pyfunc
        import envkit.sklearn

        X, y = load_iris(return_X_y=True, as_frame=True)
        self.clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)

        class Doubler(envkit.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return [2 * x for x in model_input]

        self.model = Doubler()
        self.root = Path(tempfile.mkdtemp(prefix="envkit-bench-"))
        self.n = 0

    def _sk(self, path: Path, explicit: bool) -> None:
        import envkit.sklearn

        kw = {"pip_requirements": ["scikit-learn"]} if explicit else {}
        envkit.sklearn.save_model(self.clf, path, **kw)

    def _py(self, path: Path, explicit: bool) -> None:
        import envkit.pyfunc

        kw = {"pip_requirements": ["cloudpickle"]} if explicit else {}
        envkit.pyfunc.save_model(path, python_model=self.model, **kw)

    def round(self) -> dict[str, float]:
        result = {}
        for name, save in (("iris sklearn pipeline", self._sk), ("custom pyfunc", self._py)):
            for explicit in (True, False):
                self.n += 1
                path = self.root / f"m{self.n}"
                start = time.perf_counter()
                save(path, explicit)
                result[f"{name}|{'explicit' if explicit else 'inferred'}"] = (
                    time.perf_counter() - start
                )
                shutil.rmtree(path)
        return result


def summarize(rounds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for model in ("iris sklearn pipeline", "custom pyfunc"):
        explicit = statistics.median(r[f"{model}|explicit"] for r in rounds)
        inferred = statistics.median(r[f"{model}|inferred"] for r in rounds)
        out[model] = {"explicit": explicit, "inferred": inferred, "capture": inferred - explicit}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--mlflow-python", default=os.environ.get("ENVKIT_BENCH_MLFLOW_PYTHON"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    mlflow_python = args.mlflow_python or find_mlflow_python()
    worker = None
    if mlflow_python:
        worker = subprocess.Popen(
            [mlflow_python, "-c", MLFLOW_WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        assert worker.stdout is not None and worker.stdin is not None
        if worker.stdout.readline().strip() != "ready":
            print("MLflow worker failed to start; measuring envkit only", file=sys.stderr)
            worker = None
    else:
        print("no MLflow virtualenv found (--mlflow-python); measuring envkit only")

    def mlflow_round() -> dict[str, float]:
        assert worker is not None and worker.stdin and worker.stdout
        worker.stdin.write("go\n")
        worker.stdin.flush()
        return json.loads(worker.stdout.readline())

    envkit_side = EnvkitRounds()
    envkit_side.round()  # warm-up: first imports, the distribution index
    if worker:
        mlflow_round()
    envkit_rounds, mlflow_rounds = [], []
    for i in range(args.repeat):
        envkit_rounds.append(envkit_side.round())
        if worker:
            mlflow_rounds.append(mlflow_round())
        print(f"round {i + 1}/{args.repeat} done", file=sys.stderr)
    if worker:
        worker.stdin.close()  # type: ignore[union-attr]
        worker.wait(timeout=60)
    shutil.rmtree(envkit_side.root, ignore_errors=True)

    envkit_figures = summarize(envkit_rounds)
    mlflow_figures = summarize(mlflow_rounds) if mlflow_rounds else None
    print("\ncapture cost = median(save, inferred) - median(save, explicit pip_requirements)")
    print(f"{args.repeat} rounds, alternating envkit and MLflow; no input example\n")
    header = f"{'model':<24}{'envkit':>10}{'MLflow':>10}{'ratio':>8}   envkit explicit/inferred"
    print(header)
    print("-" * len(header))
    ok = True
    for model, figures in envkit_figures.items():
        mine = figures["capture"]
        theirs = mlflow_figures[model]["capture"] if mlflow_figures else None
        ratio = mine / theirs if theirs else None
        if ratio is not None and ratio > TARGET_RATIO:
            ok = False
        print(
            f"{model:<24}{mine:>9.2f}s"
            + (f"{theirs:>9.2f}s{ratio:>8.2f}" if theirs else f"{'-':>10}{'-':>8}")
            + f"   {figures['explicit']:.2f}s / {figures['inferred']:.2f}s"
        )
    if mlflow_figures:
        print(f"\ntarget: ratio <= {TARGET_RATIO} -> {'met' if ok else 'NOT met'}")
    if args.json:
        print(json.dumps({"envkit": envkit_figures, "mlflow": mlflow_figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
