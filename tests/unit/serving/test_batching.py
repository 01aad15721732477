"""Micro-batching in the real app, in process: concurrent requests merged into one predict,
split back, and a bad row failing its own request only."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest

import envkit.pyfunc
from envkit.errors import UsageError
from envkit.serving.app import create_app
from envkit.serving.batching import BatchSettings, _split
from envkit.serving.server import resolve_batching


class Doubler(envkit.pyfunc.PythonModel):
    """Twice x, row by row; a row with x == 13 makes the whole call raise."""

    def __init__(self):
        self.calls = []

    def predict(self, context, model_input, params=None):
        self.calls.append(len(model_input))
        if (model_input["x"] == 13).any():
            raise ValueError("13 is unlucky")
        return (model_input["x"] * 2).to_numpy()


def save(path, **kwargs):
    from envkit.deps.capture import capture_disabled

    with capture_disabled("a unit test of the scoring server"):
        envkit.pyfunc.save_model(
            path, python_model=Doubler(), input_example=pd.DataFrame({"x": [1.0]}), **kwargs
        )
    return envkit.pyfunc.load_model(path)


@pytest.fixture(scope="module")
def doubler(tmp_path_factory):
    return save(tmp_path_factory.mktemp("batching") / "doubler", row_independent=True)


async def post(app, payload) -> tuple[int, dict]:
    body = json.dumps(payload).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 5000),
    }
    sent: list[dict] = []

    async def receive():
        await asyncio.sleep(0)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def concurrently(app, payloads):
    async def main():
        return await asyncio.gather(*(post(app, p) for p in payloads))

    return asyncio.run(main())


def rows(*values):
    return {"dataframe_split": {"columns": ["x"], "data": [[v] for v in values]}}


def test_concurrent_requests_are_merged_and_a_bad_row_fails_alone(doubler):
    app = create_app(doubler, batching=BatchSettings(max_batch_size=64, max_latency_ms=200))
    model = doubler.unwrap_python_model()
    model.calls.clear()
    payloads = [rows(i + 20, i + 20.5) for i in range(20)]
    payloads[7] = rows(13)  # fails the merged call; alone, it fails its own request only
    payloads[11] = {"dataframe_split": {"columns": ["x"], "data": [["a string"]]}}  # a 400
    answers = concurrently(app, payloads)
    for i, (status, body) in enumerate(answers):
        if i == 7:
            assert status == 500 and body["error_code"] == "INTERNAL_ERROR"
        elif i == 11:
            assert status == 400 and "column 'x'" in body["message"]
        else:
            assert (status, body) == (200, {"predictions": [2.0 * i + 40, 2.0 * i + 41]})
    assert max(model.calls) > 2  # merged: more rows in one call than any request has


def test_merged_answers_are_the_answers_of_each_request_alone(doubler):
    batched = create_app(doubler, batching=BatchSettings(max_batch_size=8, max_latency_ms=100))
    alone = create_app(doubler)
    payloads = [rows(*range(i % 3 + 1)) for i in range(12)]
    assert concurrently(batched, payloads) == concurrently(alone, payloads)


def test_a_model_that_does_not_declare_row_independence_is_refused(tmp_path):
    model = save(tmp_path / "undeclared")
    assert not model.row_independent
    with pytest.raises(UsageError, match="row-independent"):
        create_app(model, batching=BatchSettings(max_batch_size=8, max_latency_ms=1))
    create_app(model)  # without batching it serves


def test_batching_settings(monkeypatch):
    monkeypatch.delenv("ENVKIT_SERVE_MAX_BATCH_SIZE", raising=False)
    monkeypatch.delenv("ENVKIT_SERVE_MAX_LATENCY_MS", raising=False)
    assert resolve_batching() is None
    assert resolve_batching("1") is None  # one row per predict is no batching
    assert resolve_batching("32") == BatchSettings(32, 2.0)
    assert resolve_batching("32", "0.5") == BatchSettings(32, 0.5)
    monkeypatch.setenv("ENVKIT_SERVE_MAX_BATCH_SIZE", "16")
    assert resolve_batching() == BatchSettings(16, 2.0)
    for size, latency in (("0", None), ("x", None), ("8", "-1"), ("8", "soon")):
        with pytest.raises(UsageError):
            resolve_batching(size, latency)
    monkeypatch.delenv("ENVKIT_SERVE_MAX_BATCH_SIZE")
    with pytest.raises(UsageError, match="needs --max-batch-size"):
        resolve_batching(None, "5")


def test_predictions_are_split_by_rows_or_not_at_all():
    import numpy as np

    assert [p.tolist() for p in _split(np.arange(5), [2, 3])] == [[0, 1], [2, 3, 4]]
    frame = pd.DataFrame({"a": range(3)})
    assert [len(p) for p in _split(frame, [1, 2])] == [1, 2]
    assert _split(np.arange(4), [2, 3]) is None  # not one prediction per row
    assert _split({"a": 1}, [1, 1]) is None


def test_sklearn_models_are_row_independent_unless_they_say_otherwise(
    tmp_path, iris_pipeline, iris
):
    import envkit.sklearn
    from envkit.deps.capture import capture_disabled

    X, _ = iris
    with capture_disabled("unit test"):
        envkit.sklearn.save_model(iris_pipeline, tmp_path / "a", input_example=X.head(2))
        envkit.sklearn.save_model(iris_pipeline, tmp_path / "b", row_independent=False)
        envkit.sklearn.save_model(iris_pipeline, tmp_path / "c", pyfunc_predict_fn="score")
    assert envkit.pyfunc.load_model(tmp_path / "a").row_independent
    assert not envkit.pyfunc.load_model(tmp_path / "b").row_independent
    assert not envkit.pyfunc.load_model(tmp_path / "c").row_independent
