"""The scoring server, for real: `envkit serve` on a free loopback port, spoken to over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from importlib.metadata import version
from pathlib import Path

import pytest

RUNTIME_PINS = [f"pandas=={version('pandas')}", f"numpy=={version('numpy')}"]
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]


# --- helpers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    content_type: str | None = "application/json",
    *,
    chunked: bool = False,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        data = body.encode() if isinstance(body, str) else body
        if chunked:
            conn.request(
                method, path, body=iter([data or b""]), headers=headers, encode_chunked=True
            )
        else:
            conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post_json(port: int, payload, **kwargs) -> tuple[int, dict]:
    status, body = request(port, "POST", "/invocations", json.dumps(payload), **kwargs)
    return status, json.loads(body)


class Server:
    """`envkit serve ...` in a subprocess, stopped with SIGTERM (forwarded to the server)."""

    def __init__(
        self, model: Path, *args: str, env: dict | None = None, python: str | Path = sys.executable
    ) -> None:
        self.port = free_port()
        self.argv = [
            str(python),
            "-m",
            "envkit",
            "serve",
            str(model),
            "--port",
            str(self.port),
            *args,
        ]
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._output: str | None = None

    def wait_ready(self, timeout: float = 240) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited {self.proc.returncode}:\n{self.output()}")
            try:
                status, _ = request(self.port, "GET", "/ping", content_type=None)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the server did not answer /ping within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        if self._output is None:
            assert self.proc.stdout is not None
            with self.proc.stdout:
                self._output = self.proc.stdout.read()
        return self._output

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output()  # reads and closes the pipe
        return self.proc.returncode


# --- models --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory, iris_pipeline) -> dict[str, Path]:
    import pandas as pd

    import envkit.pyfunc
    import envkit.sklearn
    from envkit.models import infer_signature

    root = tmp_path_factory.mktemp("serve-models")
    iris = root / "iris"
    X = pd.DataFrame(ROWS, columns=FEATURES)
    envkit.sklearn.save_model(
        iris_pipeline,
        iris,
        input_example=X,
        pip_requirements=[
            f"scikit-learn=={version('scikit-learn')}",
            *RUNTIME_PINS,
            f"cloudpickle=={version('cloudpickle')}",
        ],
    )
    code = root / "counting_code.py"
    code.write_text(
        textwrap.dedent(
            """
            import envkit.models
            import envkit.pyfunc


            class Model(envkit.pyfunc.PythonModel):
                def predict(self, context, model_input, params=None):
                    k = (params or {}).get("k", 1)
                    values = model_input.iloc[:, 0] if hasattr(model_input, "iloc") else model_input
                    out = []
                    for v in values:
                        if int(v) == 13:
                            raise ValueError("thirteen is unlucky")
                        if int(v) == 99:
                            raise SystemExit(3)
                        out.append(int(v) * k)
                    return out


            envkit.models.set_model(Model())
            """
        )
    )
    counting = root / "counting"
    envkit.pyfunc.save_model(
        counting,
        python_model=str(code),
        input_example=([1, 2, 3], {"k": 2}),
        signature=infer_signature([1, 2, 3], [2, 4, 6], params={"k": 2}),
        pip_requirements=RUNTIME_PINS,
    )
    odd_code = root / "odd_code.py"
    odd_code.write_text(
        textwrap.dedent(
            """
            import datetime

            import envkit.models
            import envkit.pyfunc


            class Model(envkit.pyfunc.PythonModel):
                def predict(self, context, model_input, params=None):
                    kind = int(list(model_input)[0])
                    if kind == 1:
                        return [b"\\xff\\x00", datetime.date(2024, 5, 1)]
                    return [object()]


            envkit.models.set_model(Model())
            """
        )
    )
    odd = root / "odd"
    envkit.pyfunc.save_model(odd, python_model=str(odd_code), pip_requirements=RUNTIME_PINS)
    return {"iris": iris, "counting": counting, "odd": odd}


@pytest.fixture(scope="module")
def iris_server(serve_models):
    server = Server(
        serve_models["iris"], "--env-manager", "local", "--max-body-size", "64k"
    ).wait_ready()
    yield server
    assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def counting_server(serve_models):
    server = Server(serve_models["counting"], "--env-manager", "local").wait_ready()
    yield server
    server.stop()


# --- the protocol --------------------------------------------------------------------------------


def test_ping_health_version(iris_server):
    from envkit import __version__

    for path in ("/ping", "/health"):
        assert request(iris_server.port, "GET", path, content_type=None)[0] == 200
    status, body = request(iris_server.port, "GET", "/version", content_type=None)
    assert (status, body.decode()) == (200, __version__)


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json", {"dataframe_split": {"columns": FEATURES, "data": ROWS}}),
        ("application/json", {"dataframe_records": [dict(zip(FEATURES, r)) for r in ROWS]}),
        ("application/json", {"instances": [dict(zip(FEATURES, r)) for r in ROWS]}),
        ("application/json", {"inputs": {f: [r[i] for r in ROWS] for i, f in enumerate(FEATURES)}}),
        ("text/csv", ",".join(FEATURES) + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS)),
        (
            "application/json; charset=utf-8",
            {"dataframe_split": {"columns": FEATURES, "data": ROWS}},
        ),
    ],
    ids=["dataframe_split", "dataframe_records", "instances", "inputs", "csv", "charset"],
)
def test_every_payload_format_predicts(iris_server, iris_pipeline, content_type, body):
    import pandas as pd

    text = body if isinstance(body, str) else json.dumps(body)
    status, raw = request(iris_server.port, "POST", "/invocations", text, content_type)
    assert status == 200, raw
    expected = iris_pipeline.predict(pd.DataFrame(ROWS, columns=FEATURES)).tolist()
    assert json.loads(raw) == {"predictions": expected}


def test_serving_input_example_round_trips_through_the_same_parser(iris_server, serve_models):
    from envkit.models import validate_serving_input

    path = serve_models["iris"] / "serving_input_example.json"
    status, raw = request(iris_server.port, "POST", "/invocations", path.read_bytes())
    assert status == 200, raw
    expected = validate_serving_input(serve_models["iris"], path)
    assert json.loads(raw)["predictions"] == expected.tolist()


def test_params_reach_the_model(counting_server, serve_models):
    port = counting_server.port
    assert post_json(port, {"inputs": [1, 2], "params": {"k": 3}}) == (200, {"predictions": [3, 6]})
    assert post_json(port, {"inputs": [1, 2]}) == (200, {"predictions": [2, 4]})  # default k=2
    example = (serve_models["counting"] / "serving_input_example.json").read_bytes()
    status, raw = request(port, "POST", "/invocations", example)
    assert (status, json.loads(raw)) == (200, {"predictions": [2, 4, 6]})


@pytest.mark.parametrize(
    "method, path, body, content_type, status, code, words",
    [
        (
            "POST",
            "/invocations",
            '{"dataframe": []}',
            "application/json",
            400,
            "BAD_REQUEST",
            ["dataframe_split", "'dataframe'"],
        ),
        (
            "POST",
            "/invocations",
            '{"inputs": [1], "instances": [1]}',
            "application/json",
            400,
            "BAD_REQUEST",
            ["exactly one"],
        ),
        (
            "POST",
            "/invocations",
            '{"dataframe_split": ',
            "application/json",
            400,
            "MALFORMED_REQUEST",
            ["not valid JSON"],
        ),
        ("POST", "/invocations", "[1, 2]", "application/json", 400, "BAD_REQUEST", ["JSON object"]),
        (
            "POST",
            "/invocations",
            '{"inputs": ' + "[" * 20_000 + "]" * 20_000 + "}",
            "application/json",
            400,
            "MALFORMED_REQUEST",
            ["nests arrays or objects too deeply"],
        ),
        (
            "POST",
            "/invocations",
            json.dumps(
                {
                    "dataframe_records": [
                        {FEATURES[0]: "wide", FEATURES[1]: 1.0, FEATURES[2]: 1.0, FEATURES[3]: 1.0}
                    ]
                }
            ),
            "application/json",
            400,
            "INVALID_PARAMETER_VALUE",
            [FEATURES[0], "double"],
        ),
        (
            "POST",
            "/invocations",
            json.dumps({"dataframe_records": [{FEATURES[0]: 1.0}]}),
            "application/json",
            400,
            "INVALID_PARAMETER_VALUE",
            ["missing", FEATURES[1]],
        ),
        (
            "POST",
            "/invocations",
            "x" * 70_000,
            "application/json",
            413,
            "REQUEST_LIMIT_EXCEEDED",
            ["limit", "--max-body-size"],
        ),
        (
            "POST",
            "/invocations",
            "a,b\n1,2",
            "text/plain",
            415,
            "BAD_REQUEST",
            ["text/plain", "text/csv"],
        ),
        ("POST", "/invocations", "", "application/json", 400, "BAD_REQUEST", ["empty"]),
        ("GET", "/invocations", None, None, 405, "BAD_REQUEST", ["GET"]),
        ("GET", "/predict", None, None, 404, "ENDPOINT_NOT_FOUND", ["/invocations"]),
    ],
    ids=[
        "unknown-key",
        "two-keys",
        "malformed-json",
        "not-an-object",
        "nested-too-deeply",
        "schema-type",
        "schema-missing-column",
        "too-large",
        "content-type",
        "empty",
        "method",
        "route",
    ],
)
def test_bad_requests_get_a_4xx_that_says_what_is_wrong(
    iris_server, method, path, body, content_type, status, code, words
):
    got, raw = request(iris_server.port, method, path, body, content_type)
    payload = json.loads(raw)
    assert got == status, payload
    assert payload["error_code"] == code
    for word in words:
        assert word in payload["message"], payload["message"]


def test_a_chunked_body_over_the_limit_is_refused_while_reading(iris_server):
    status, raw = request(iris_server.port, "POST", "/invocations", b"[" * 70_000, chunked=True)
    assert status == 413
    assert json.loads(raw)["error_code"] == "REQUEST_LIMIT_EXCEEDED"


def test_a_model_exception_is_a_500_and_the_server_keeps_serving(counting_server):
    port = counting_server.port
    status, payload = post_json(port, {"inputs": [1, 13]})
    assert status == 500
    assert payload["error_code"] == "INTERNAL_ERROR"
    # The client gets an error id; what the model said goes to the server's log only.
    assert "error id " in payload["message"] and "thirteen" not in payload["message"]
    status, payload = post_json(port, {"inputs": [99]})  # the model calls sys.exit
    assert status == 500 and "error id " in payload["message"]
    assert request(port, "GET", "/ping", content_type=None)[0] == 200
    assert post_json(port, {"inputs": [4]}) == (200, {"predictions": [8]})
    assert counting_server.proc.poll() is None


def test_a_model_that_cannot_load_fails_at_startup(tmp_path, serve_models):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(serve_models["iris"], broken)
    (broken / "model.pkl").write_bytes(b"not a pickle")
    server = Server(broken, "--env-manager", "local")
    assert server.proc.wait(timeout=120) == 2  # an unreadable model file
    output = server.output()
    assert output.startswith("error: model.pkl cannot be deserialized"), output


@pytest.mark.slow
def test_serve_in_the_cached_uv_environment_with_two_workers(serve_models, shared_cache):
    """The server runs in the model's rebuilt environment (+ envkit[serve]), not here."""
    env = {**os.environ, "ENVKIT_HOME": str(shared_cache)}
    server = Server(serve_models["counting"], "--env-manager", "uv", "--workers", "2", env=env)
    try:
        server.wait_ready(timeout=600)
        results = {post_json(server.port, {"inputs": [i]})[1]["predictions"][0] for i in range(6)}
        assert results == {0, 2, 4, 6, 8, 10}
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text()
        child = children.split()[0]
        python = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert python.startswith(str(shared_cache)), python
    finally:
        assert server.stop() == 0, server.output()


@pytest.mark.slow
def test_serve_predict_and_validate_agree_on_a_model_without_pandas(tmp_path, shared_cache):
    """A plain-Python model records envkit and cloudpickle only, so its environment (serving
    included) has no pandas or numpy: JSON payloads reach it as Python data in `envkit serve`,
    `envkit predict` and `envkit validate --input` alike, and a DataFrame payload is refused
    the same way by all three (a 400; exit 2), naming what to do."""
    import envkit.pyfunc

    class Doubler(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [2 * x for x in model_input]

    envkit.pyfunc.save_model(tmp_path / "m", python_model=Doubler())
    names = [
        line.split("==")[0] for line in (tmp_path / "m" / "requirements.txt").read_text().split()
    ]
    assert names == ["envkit", "cloudpickle"]
    payload = tmp_path / "inputs.json"
    payload.write_text('{"inputs": [1, 2, 3]}')
    frame = tmp_path / "frame.json"
    frame.write_text('{"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}}')
    env = {**os.environ, "ENVKIT_HOME": str(shared_cache)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "envkit", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)

    predicted = cli("predict", str(tmp_path / "m"), "--input", str(payload))
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == {"predictions": [2, 4, 6]}
    validated = cli("validate", str(tmp_path / "m"), "--input", str(payload), "--format", "json")
    assert validated.returncode == 0, validated.stderr
    report = json.loads(validated.stdout)
    assert report["output"]["preview"] == "[2, 4, 6]"
    assert report["unrequested"] == []  # nothing beyond the model's requirements and envkit
    refused = cli("predict", str(tmp_path / "m"), "--input", str(frame))
    assert refused.returncode == 2, refused.stderr
    assert "this model's environment has no pandas" in refused.stderr

    server = Server(tmp_path / "m", "--env-manager", "uv", env=env)
    try:
        server.wait_ready(timeout=600)
        assert post_json(server.port, {"inputs": [1, 2, 3]}) == (200, {"predictions": [2, 4, 6]})
        status, body = post_json(server.port, json.loads(frame.read_text()))
        assert status == 400 and "this model's environment has no pandas" in body["message"]
    finally:
        assert server.stop() == 0, server.output()


# --- limits, ports, odd predictions --------------------------------------------------------------


def test_the_body_limit_comes_from_the_environment_unless_the_option_is_given(serve_models):
    body = json.dumps({"inputs": [1] * 60})  # 200 bytes or so
    env = {**os.environ, "ENVKIT_SERVE_MAX_BODY_BYTES": "100"}
    server = Server(serve_models["counting"], "--env-manager", "local", env=env).wait_ready()
    try:
        status, raw = request(server.port, "POST", "/invocations", body)
        assert status == 413 and "over this server's limit of 100" in json.loads(raw)["message"]
    finally:
        server.stop()
    server = Server(
        serve_models["counting"], "--env-manager", "local", "--max-body-size", "1k", env=env
    ).wait_ready()
    try:
        assert request(server.port, "POST", "/invocations", body)[0] == 200
    finally:
        server.stop()


def test_an_invalid_body_limit_is_exit_2_in_one_line(serve_models):
    env = {**os.environ, "ENVKIT_SERVE_MAX_BODY_BYTES": "abc"}
    server = Server(serve_models["counting"], "--env-manager", "local", env=env)
    assert server.proc.wait(timeout=120) == 2
    assert server.output() == (
        "error: invalid ENVKIT_SERVE_MAX_BODY_BYTES 'abc'; use bytes or a unit, e.g. 512k, "
        "50MB, 1GB\n"
    )


@pytest.mark.parametrize("env_manager", ["local", "uv"])
def test_a_port_in_use_is_one_line_before_anything_is_built(serve_models, tmp_path, env_manager):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        home = tmp_path / "home"
        args = ["--port", str(port), "--env-manager", env_manager]
        proc = subprocess.run(
            [sys.executable, "-m", "envkit", "serve", str(serve_models["counting"]), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "ENVKIT_HOME": str(home)},
            timeout=120,
        )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: port {port} is in use on 127.0.0.1; stop what listens there or choose another "
        "--port\n"
    )
    assert not home.exists()  # nothing was built


def test_predictions_without_a_json_form_are_a_500_and_bytes_are_base64(serve_models):
    server = Server(serve_models["odd"], "--env-manager", "local").wait_ready()
    try:
        assert post_json(server.port, {"inputs": [1]}) == (
            200,
            {"predictions": ["/wA=\n", "2024-05-01"]},  # as MLflow's server sends them
        )
        status, payload = post_json(server.port, {"inputs": [2]})
        assert status == 500 and payload["error_code"] == "INTERNAL_ERROR"
        error_id = payload["message"].split("error id ")[1].split(")")[0]
    finally:
        server.stop()
    # the detail is in the server's log, under the id the client got
    line = next(x for x in server.output().splitlines() if f"error {error_id}:" in x)
    assert "the model's predictions (list) cannot be sent as JSON" in line
    assert "a value of type object has no JSON form" in line and "<object object" not in line


# --- workers and micro-batching ---------------------------------------------------------------

BATCH_CODE = """
import os

import pandas as pd

import envkit.models
import envkit.pyfunc


class Model(envkit.pyfunc.PythonModel):
    \"\"\"Twice x for each row, with the rows of the call and the process that answered; a
    row with x == 13 makes the whole call raise.\"\"\"

    def predict(self, context, model_input, params=None):
        if (model_input["x"] == 13).any():
            raise ValueError("thirteen is unlucky")
        n = len(model_input)
        return pd.DataFrame(
            {"double": model_input["x"] * 2, "rows": [n] * n, "pid": [os.getpid()] * n}
        )


envkit.models.set_model(Model())
"""


@pytest.fixture(scope="module")
def batch_model(tmp_path_factory) -> Path:
    import pandas as pd

    import envkit.pyfunc

    root = tmp_path_factory.mktemp("batch-model")
    (root / "batch_code.py").write_text(BATCH_CODE)
    envkit.pyfunc.save_model(
        root / "model",
        python_model=str(root / "batch_code.py"),
        input_example=pd.DataFrame({"x": [1.0, 2.0]}),
        pip_requirements=RUNTIME_PINS,
        row_independent=True,
    )
    return root / "model"


def concurrently(port: int, payloads: list) -> list[tuple[int, dict]]:
    """Each payload from its own client thread, all at once."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(payloads)) as pool:
        return list(pool.map(lambda p: post_json(port, p), payloads))


def x_rows(*values) -> dict:
    return {"dataframe_split": {"columns": ["x"], "data": [[v] for v in values]}}


@pytest.mark.timeout(300)
def test_two_workers_both_answer(batch_model):
    server = Server(batch_model, "--env-manager", "local", "--workers", "2").wait_ready()
    try:
        pids: set[int] = set()
        for _ in range(30):  # which worker accepts a connection is the kernel's choice
            for status, body in concurrently(server.port, [x_rows(i) for i in range(8)]):
                assert status == 200, body
                pids.update(row["pid"] for row in body["predictions"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        assert server.proc.pid not in pids  # the workers are uvicorn's processes
    finally:
        assert server.stop() == 0, server.output()


@pytest.mark.timeout(300)
def test_batching_merges_concurrent_requests_and_a_bad_row_fails_alone(batch_model):
    server = Server(
        batch_model,
        "--env-manager",
        "local",
        "--max-batch-size",
        "64",
        "--max-latency-ms",
        "50",
    ).wait_ready()
    try:
        merged = 0
        for _ in range(10):
            payloads = [x_rows(i + 20, i + 20.5) for i in range(16)]
            payloads[3] = x_rows(13)  # fails the merged call: then each request alone
            payloads[5] = {"dataframe_split": {"columns": ["x"], "data": [["text"]]}}  # 400
            answers = concurrently(server.port, payloads)
            for i, (status, body) in enumerate(answers):
                if i == 3:
                    assert status == 500 and body["error_code"] == "INTERNAL_ERROR", body
                elif i == 5:
                    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
                else:
                    assert status == 200, body
                    doubles = [row["double"] for row in body["predictions"]]
                    assert doubles == [2.0 * i + 40, 2.0 * i + 41]
                    merged = max(merged, *(row["rows"] for row in body["predictions"]))
            if merged > 2:
                break
        assert merged > 2  # more rows in one predict than any request sent
    finally:
        assert server.stop() == 0, server.output()
    assert "micro-batching: up to 64 rows per predict" in server.output()


def test_batching_is_refused_for_a_model_that_does_not_declare_row_independence(serve_models):
    args = ["--env-manager", "local", "--port", str(free_port()), "--max-batch-size", "8"]
    proc = subprocess.run(
        [sys.executable, "-m", "envkit", "serve", str(serve_models["counting"]), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --max-batch-size: this model does not declare a ")
    assert len(proc.stderr.strip().splitlines()) == 1
