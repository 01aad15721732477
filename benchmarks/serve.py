"""Scoring server throughput and latency: envkit serve vs `mlflow models serve`, same model.

    python benchmarks/serve.py [--requests 1000] [--batch-requests 300]

Both servers run the same MLflow-saved iris model (StandardScaler + LogisticRegression) with
one worker each, on 127.0.0.1 only, in this interpreter's environment (``local``: environment
building is not what is measured). Requests are sequential on one keep-alive connection, in
bounded counts; payloads are ``dataframe_split`` with 1 and 100 rows. MLflow runs from the
test suite's MLflow virtualenv (built on first use, ~1 min).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN = """
import sys
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X, y = load_iris(return_X_y=True, as_frame=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
mlflow.sklearn.save_model(model, sys.argv[1], input_example=X.head(3))
"""


def mlflow_python() -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # the suite's shared, file-locked MLflow virtualenv

    return conftest.mlflow_venv_python()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not come up")


def measure(port: int, body: bytes, count: int, warmup: int = 30) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    latencies = []
    for i in range(warmup + count):
        start = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        if i >= warmup:
            latencies.append(elapsed)
    conn.close()
    latencies.sort()
    total = sum(latencies)
    return {
        "rps": count / total,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="single-row requests")
    parser.add_argument("--batch-requests", type=int, default=300, help="100-row requests")
    args = parser.parse_args()

    mlflow = mlflow_python()
    with tempfile.TemporaryDirectory(prefix="envkit-bench-") as tmp:
        model = Path(tmp) / "iris"
        subprocess.run([str(mlflow), "-c", TRAIN, str(model)], check=True, capture_output=True)
        from sklearn.datasets import load_iris

        X, _ = load_iris(return_X_y=True, as_frame=True)
        columns = list(X.columns)
        one = json.dumps(
            {"dataframe_split": {"columns": columns, "data": X.head(1).values.tolist()}}
        )
        hundred = json.dumps(
            {
                "dataframe_split": {
                    "columns": columns,
                    "data": X.sample(100, random_state=0).values.tolist(),
                }
            }
        )
        servers = {
            "envkit serve": lambda port: [
                sys.executable,
                "-m",
                "envkit.serving",
                str(model),
                "--port",
                str(port),
            ],
            "mlflow models serve": lambda port: [
                str(mlflow),
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                str(model),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--env-manager",
                "local",
                "-w",
                "1",
            ],
        }
        results: dict[str, dict[str, dict[str, float]]] = {}
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        for name, argv in servers.items():
            port = free_port()
            # mlflow starts `uvicorn` from PATH: its virtualenv's bin goes first.
            path = f"{mlflow.parent}{os.pathsep}{env.get('PATH', '')}"
            proc = subprocess.Popen(
                argv(port),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # envkit from this checkout, not whichever envkit is installed.
                env={**env, "PATH": path}
                if name.startswith("mlflow")
                else {**env, "PYTHONPATH": str(ROOT)},
            )
            try:
                wait_ready(port, proc)
                results[name] = {
                    "1 row": measure(port, one.encode(), args.requests),
                    "100 rows": measure(port, hundred.encode(), args.batch_requests),
                }
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    print(
        f"iris model, one worker, sequential keep-alive requests on 127.0.0.1 "
        f"({args.requests} x 1 row, {args.batch_requests} x 100 rows)"
    )
    print(f"{'server':<22}{'payload':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for name, by_payload in results.items():
        for payload, r in by_payload.items():
            print(f"{name:<22}{payload:<10}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
