"""The scorer's fast path (the compiled reader, predict_enforced, bytes written once) answers
exactly what the general path answers, through the real ASGI app."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

import envkit.pyfunc
import envkit.sklearn
from envkit.serving.app import create_app
from envkit.serving.scoring import _Scorer


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory, iris, iris_pipeline):
    from envkit.deps.capture import capture_disabled

    X, _ = iris
    path = tmp_path_factory.mktemp("scorer") / "iris"
    with capture_disabled("a unit test of the scoring server"):
        envkit.sklearn.save_model(iris_pipeline, path, input_example=X.head(3))
    return envkit.pyfunc.load_model(path)


def post(app, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    """One request through the ASGI app, in this process (no sockets)."""
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
        "headers": [(b"content-type", content_type.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 5000),
    }
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def payloads(iris):
    X, _ = iris
    columns = list(X.columns)
    rows = X.sample(20, random_state=1).values.tolist()
    return [
        {"dataframe_split": {"columns": columns, "data": rows[:1]}},
        {"dataframe_split": {"columns": columns, "data": rows}},
        {"dataframe_split": {"columns": columns[::-1], "data": [r[::-1] for r in rows]}},
        {"dataframe_records": [dict(zip(columns, r)) for r in rows]},
        {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(columns)}},
        # the general path's answers: missing values, a string, a missing column
        {"dataframe_split": {"columns": columns, "data": [[None, 1, 2, 3]]}},
        {"dataframe_split": {"columns": columns, "data": [["x", 1, 2, 3]]}},
        {"dataframe_split": {"columns": columns[:3], "data": [[1, 2, 3]]}},
    ]


def test_the_fast_path_answers_what_the_general_path_answers(iris_model, iris):
    fast = create_app(iris_model)
    general = create_app(iris_model)
    general_scorer = _scorer_of(general)
    general_scorer.compiled = None  # every payload through parse_serving_input + predict
    assert _scorer_of(fast).compiled is not None
    for payload in payloads(iris):
        body = json.dumps(payload).encode()
        assert without_error_id(post(fast, body)) == without_error_id(post(general, body))


def without_error_id(answer: tuple[int, bytes]) -> tuple[int, bytes]:
    """A 500 names a random error id."""
    return answer[0], re.sub(rb"error id [0-9a-f]+", b"error id X", answer[1])


def test_the_fast_path_is_taken_for_numeric_columns(iris_model, iris):
    X, _ = iris
    scorer = _Scorer(iris_model)
    body = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": [[1, 2, 3, 4]]}})
    prepared = scorer.read(body.encode(), "application/json")
    assert prepared.enforced and list(prepared.data.columns) == list(X.columns)
    assert json.loads(scorer.render(scorer.predict(prepared))) == {
        "predictions": iris_model.predict(
            X.head(0).__class__([[1, 2, 3, 4]], columns=X.columns)
        ).tolist()
    }


def _scorer_of(app) -> _Scorer:
    return app.state.scorer


@pytest.fixture(scope="module")
def iris_proba_model(tmp_path_factory, iris, iris_pipeline):
    from envkit.deps.capture import capture_disabled

    X, _ = iris
    path = tmp_path_factory.mktemp("scorer") / "iris-proba"
    with capture_disabled("a unit test of the scoring server"):
        envkit.sklearn.save_model(
            iris_pipeline, path, input_example=X.head(3), pyfunc_predict_fn="predict_proba"
        )
    return envkit.pyfunc.load_model(path)


def test_a_positional_sklearn_model_is_scored_from_the_array_with_the_same_answers(
    iris_proba_model, iris
):
    """Floating-point answers (predict_proba), to the last digit, through the real app."""
    fast = create_app(iris_proba_model)
    scorer = _scorer_of(fast)
    assert scorer.positional is not None
    body = json.dumps(payloads(iris)[1]).encode()
    assert scorer.read(body, "application/json", positional=True).positional
    general = create_app(iris_proba_model)
    _scorer_of(general).compiled = None
    for payload in payloads(iris):
        body = json.dumps(payload).encode()
        assert without_error_id(post(fast, body)) == without_error_id(post(general, body))
