"""Scoring server throughput and latency: envkit serve against the floor and `mlflow models serve`.

    python benchmarks/serve.py [--requests 1000] [--batch-requests 300] [--concurrent 4000]
                               [--clients 32] [--python PY] [--no-mlflow]

Every server runs the same MLflow-saved iris model (StandardScaler + LogisticRegression) on
127.0.0.1, in this interpreter's environment (``local``: environment building is not what
is measured), on the same uvicorn:

* **floor**: a bare Starlette endpoint that reads the body and calls the model's own
  ``predict`` on a prebuilt DataFrame of the same rows, so "envkit over the floor" is what
  envkit adds (parsing, enforcement, serialisation, its error handling);
* **floor, array input**: the same, ``predict`` on a prebuilt numpy array: what envkit hands a
  scikit-learn model that reads columns by position (no DataFrame for scikit-learn to check),
  so the floor of envkit's own path for this model;
* **envkit serve** with 1 and 2 workers, and with micro-batching (``--max-batch-size 64
  --max-latency-ms 2``);
* **mlflow models serve** (from the test suite's MLflow virtualenv, built on first use).

All servers run at once and are measured in ``--rounds`` interleaved rounds (each cell gets
its share of the requests per round), so a machine busy with other work slows them alike.
Sequential rows: one keep-alive connection, 1-row and 100-row ``dataframe_split`` payloads.
Concurrent rows: ``--clients`` keep-alive connections sending 1-row requests as fast as
answers come back (a closed loop), from one asyncio process that writes pre-encoded requests
(so the client costs little of the machine's CPU). Figures only; nothing is asserted.
``--python`` serves with another interpreter (e.g. a virtualenv with ``uvicorn[standard]``).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
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
# The floor: the same uvicorn and Starlette, the model's own predict on prebuilt input.
FLOOR = textwrap.dedent(
    """
    import sys
    import warnings

    import uvicorn
    from sklearn.datasets import load_iris
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    import envkit.sklearn

    model = envkit.sklearn.load_model(sys.argv[1])
    X, _ = load_iris(return_X_y=True, as_frame=True)
    inputs = {"1": X.head(1), "100": X.sample(100, random_state=0).reset_index(drop=True)}
    if sys.argv[3] == "array":  # as envkit hands it over: F-ordered, as a DataFrame's values
        inputs = {rows: frame.to_numpy() for rows, frame in inputs.items()}
        warnings.filterwarnings("ignore", message="X does not have valid feature names")

    async def invocations(request):
        await request.body()
        predictions = model.predict(inputs[request.path_params["rows"]])
        return Response(
            '{"predictions": %s}' % predictions.tolist(), media_type="application/json"
        )

    async def ping(request):
        return Response("\\n", media_type="application/json")

    app = Starlette(
        routes=[
            Route("/invocations/{rows}", invocations, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    """
)


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


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def sequential(
    port: int, path: str, body: bytes, count: int, warmup: int = 10
) -> tuple[list[float], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    latencies = []
    for i in range(warmup + count):
        start = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        if i >= warmup:
            latencies.append(elapsed)
    conn.close()
    return latencies, sum(latencies)


async def _client(port: int, request: bytes, until: list[int], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while until[0] > 0:
            until[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def concurrent(
    port: int, path: str, body: bytes, count: int, clients: int
) -> tuple[list[float], float]:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def run(total: int) -> tuple[list[float], float]:
        latencies: list[float] = []
        until = [total]
        start = time.perf_counter()
        await asyncio.gather(*(_client(port, request, until, latencies) for _ in range(clients)))
        return latencies, time.perf_counter() - start

    asyncio.run(run(clients * 2))  # warm-up: every connection, every worker
    return asyncio.run(run(count))


def start(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_ready(port, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="sequential 1-row requests")
    parser.add_argument("--batch-requests", type=int, default=300, help="sequential 100-row")
    parser.add_argument("--concurrent", type=int, default=4000, help="concurrent 1-row requests")
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--python", default=sys.executable, help="the servers' interpreter")
    parser.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="envkit-bench-") as tmp:
        model = Path(tmp) / "iris"
        if args.no_mlflow:
            train = TRAIN.replace("import mlflow.sklearn", "import envkit.sklearn as sk")
            train = train.replace("mlflow.sklearn.save_model", "sk.save_model")
            subprocess.run(
                [args.python, "-c", train, str(model)],
                check=True,
                capture_output=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        else:
            mlflow = mlflow_python()
            subprocess.run([str(mlflow), "-c", TRAIN, str(model)], check=True, capture_output=True)
        results = run_all(args, model)

    print(
        f"iris model on 127.0.0.1, server Python {args.python}; sequential: one keep-alive "
        f"connection ({args.requests} x 1 row, {args.batch_requests} x 100 rows); concurrent: "
        f"{args.clients} connections, {args.concurrent} x 1 row"
    )
    print(f"{'server':<34}{'load':<22}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for (name, load), r in results.items():
        print(f"{name:<34}{load:<22}{r['rps']:>8.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")
    print_ratios(results)
    return 0


def print_ratios(results: dict[tuple[str, str], dict]) -> None:
    """The 1-row sequential ratios: envkit over each floor, envkit and the floor over MLflow."""
    one = "sequential 1 row"
    mine = results.get(("envkit serve", one))
    mlflow_row = results.get(("mlflow models serve", one))
    for floor_name in ("floor (bare Starlette + predict)", "floor, array input"):
        floor = results.get((floor_name, one))
        if floor and mine:
            print(
                f"envkit over the {floor_name}, 1 row: p50 "
                f"{mine['p50_ms'] / floor['p50_ms']:.2f}x, req/s {mine['rps'] / floor['rps']:.2f}x"
            )
        if floor and mlflow_row:
            print(
                f"{floor_name} / mlflow models serve, 1 row req/s: "
                f"{floor['rps'] / mlflow_row['rps']:.2f}x"
            )
    if mine and mlflow_row:
        print(f"envkit / mlflow models serve, 1 row req/s: {mine['rps'] / mlflow_row['rps']:.2f}x")


def run_all(args: argparse.Namespace, model: Path) -> dict[tuple[str, str], dict]:
    """Every server started at once (idle ones cost nothing), then measured in interleaved
    rounds, so that a machine busy with other work slows them all alike."""
    one, hundred = payload(1), payload(100)
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name, argv, server_env, _ in servers(args, model):
            port = free_port()
            procs[name] = (start(argv(port), server_env, port), port)
        cells = []
        for name, _, _, loads in servers(args, model):
            floor = name.startswith("floor")
            path1, path100 = (
                ("/invocations/1", "/invocations/100") if floor else ("/invocations",) * 2
            )
            port = procs[name][1]
            if "seq" in loads:
                cells.append((name, "sequential 1 row", port, path1, one, args.requests, 1))
                cells.append(
                    (name, "sequential 100 rows", port, path100, hundred, args.batch_requests, 1)
                )
            if "conc" in loads:
                cells.append(
                    (
                        name,
                        f"{args.clients} clients 1 row",
                        port,
                        path1,
                        one,
                        args.concurrent,
                        args.clients,
                    )
                )
        samples: dict[tuple[str, str], tuple[list[float], float]] = {}
        for _ in range(args.rounds):
            for name, load, port, path, body, count, clients in cells:
                per_round = max(1, count // args.rounds)
                if clients == 1:
                    latencies, elapsed = sequential(port, path, body, per_round)
                else:
                    latencies, elapsed = concurrent(port, path, body, per_round, clients)
                got, total = samples.get((name, load), ([], 0.0))
                samples[(name, load)] = (got + latencies, total + elapsed)
    finally:
        for proc, _ in procs.values():
            stop(proc)
    return {key: summary(latencies, elapsed) for key, (latencies, elapsed) in samples.items()}


def servers(
    args: argparse.Namespace, model: Path
) -> list[tuple[str, Callable[[int], list[str]], dict[str, str], list[str]]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    mine = {**env, "PYTHONPATH": str(ROOT)}  # envkit from this checkout
    serve = [args.python, "-m", "envkit.serving", str(model), "--log-level", "warning"]
    batch = ["--max-batch-size", "64", "--max-latency-ms", "2"]
    found: list[tuple[str, Callable[[int], list[str]], dict[str, str], list[str]]] = [
        (
            "floor (bare Starlette + predict)",
            lambda port: [args.python, "-c", FLOOR, str(model), str(port), "frame"],
            mine,
            ["seq", "conc"],
        ),
        (
            "floor, array input",
            lambda port: [args.python, "-c", FLOOR, str(model), str(port), "array"],
            mine,
            ["seq"],
        ),
        ("envkit serve", lambda port: [*serve, "--port", str(port)], mine, ["seq", "conc"]),
        (
            "envkit serve --workers 2",
            lambda port: [*serve, "--port", str(port), "--workers", "2"],
            mine,
            ["seq", "conc"],
        ),
        (
            "envkit serve, batching",
            lambda port: [*serve, "--port", str(port), *batch],
            mine,
            ["seq", "conc"],
        ),
        (
            "envkit serve --workers 2, batching",
            lambda port: [*serve, "--port", str(port), "--workers", "2", *batch],
            mine,
            ["conc"],
        ),
    ]
    if not args.no_mlflow:
        mlflow = mlflow_python()
        mlflow_argv = [str(mlflow), "-m", "mlflow", "models", "serve", "-m", str(model)]
        mlflow_argv += ["-h", "127.0.0.1", "--env-manager", "local", "-w", "1", "-p"]
        # mlflow starts `uvicorn` from PATH: its virtualenv's bin goes first.
        path = f"{mlflow.parent}{os.pathsep}{env.get('PATH', '')}"
        found.append(
            (
                "mlflow models serve",
                lambda port: [*mlflow_argv, str(port)],
                {**env, "PATH": path},
                ["seq", "conc"],
            )
        )
    return found


def payload(rows: int) -> bytes:
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True, as_frame=True)
    data = X.head(1) if rows == 1 else X.sample(rows, random_state=0)
    return json.dumps(
        {"dataframe_split": {"columns": list(X.columns), "data": data.values.tolist()}}
    ).encode()


if __name__ == "__main__":
    sys.exit(main())
