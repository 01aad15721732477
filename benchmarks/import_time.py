"""Median wall time of ``import envkit`` in a fresh interpreter, next to ``import mlflow``.

    python benchmarks/import_time.py [--runs N] [--mlflow-python PATH]

MLflow is measured when it is importable by this interpreter or by ``--mlflow-python`` (a
separate virtualenv's python, since envkit never depends on MLflow). Also lists heavy modules
that ``import envkit`` must not load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("pandas", "numpy", "sklearn", "scipy", "mlflow", "rich", "uv", "virtualenv")


def time_import(python: str, module: str, runs: int) -> list[float]:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    samples = []
    for _ in range(runs):
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
        samples.append(float(out.stdout.strip()))
    return samples


def process_time(python: str, module: str, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([python, "-c", f"import {module}"], check=True)
        samples.append(time.perf_counter() - start)
    return samples


def heavy_modules_loaded(python: str) -> list[str]:
    code = f"import sys, envkit; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--mlflow-python", default=None, help="python of a venv with mlflow")
    args = parser.parse_args()

    envkit_import = statistics.median(time_import(sys.executable, "envkit", args.runs))
    envkit_proc = statistics.median(process_time(sys.executable, "envkit", args.runs))
    baseline = statistics.median(process_time(sys.executable, "sys", args.runs))
    print(f"python {sys.version.split()[0]}, {args.runs} runs each, medians")
    print(
        f"import envkit:  {envkit_import * 1000:8.1f} ms  (process: {envkit_proc * 1000:.0f} ms, "
        f"bare interpreter: {baseline * 1000:.0f} ms)"
    )
    heavy = heavy_modules_loaded(sys.executable)
    print("heavy modules loaded by import envkit:", ", ".join(heavy) or "none")

    mlflow_python = args.mlflow_python
    if mlflow_python is None:
        probe = subprocess.run([sys.executable, "-c", "import mlflow"], capture_output=True)
        mlflow_python = sys.executable if probe.returncode == 0 else None
    if mlflow_python is None:
        print("import mlflow:  (not installed; pass --mlflow-python PATH to compare)")
        return 0
    mlflow_import = statistics.median(time_import(mlflow_python, "mlflow", max(3, args.runs // 3)))
    print(f"import mlflow:  {mlflow_import * 1000:8.1f} ms  ({mlflow_python})")
    print(f"ratio envkit/mlflow: {envkit_import / mlflow_import:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
