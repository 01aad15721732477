"""Streaming: a payload with ``"stream": true`` is answered with server-sent events of the
model's predict_stream chunks (``data: <json>`` each, ``data: [DONE]`` at the end)."""

from __future__ import annotations

import asyncio
import json

import pytest

import envkit.pyfunc
from envkit.serving.app import create_app


class Words(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [str(x).upper() for x in model_input]

    def predict_stream(self, context, model_input, params=None):
        for word in str(model_input).split():
            if word == "boom":
                raise RuntimeError("the model broke mid-stream")
            yield {"word": word, "n": (params or {}).get("n", 0)}


class Plain(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    from envkit.deps.capture import capture_disabled

    root = tmp_path_factory.mktemp("stream")
    with capture_disabled("a unit test of the scoring server"):
        envkit.pyfunc.save_model(root / "words", python_model=Words())
        envkit.pyfunc.save_model(root / "plain", python_model=Plain())
    return {name: create_app(envkit.pyfunc.load_model(root / name)) for name in ("words", "plain")}


def post(app, payload) -> tuple[int, str, bytes]:
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
    received = []

    async def receive():
        if received:  # the client stays connected: a streaming response listens for it to go
            await asyncio.sleep(3600)
        received.append(True)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    headers = dict(sent[0]["headers"])
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], headers[b"content-type"].decode(), body


def test_stream_true_answers_server_sent_events(apps):
    status, media, body = post(apps["words"], {"inputs": "hello big world", "stream": True})
    assert status == 200 and media.startswith("text/event-stream")
    assert body == (
        b'data: {"word": "hello", "n": 0}\n\n'
        b'data: {"word": "big", "n": 0}\n\n'
        b'data: {"word": "world", "n": 0}\n\n'
        b"data: [DONE]\n\n"
    )


def test_without_stream_the_same_model_predicts(apps):
    status, _, body = post(apps["words"], {"inputs": ["a"]})
    assert (status, json.loads(body)) == (200, {"predictions": ["A"]})
    assert post(apps["words"], {"inputs": ["a"], "stream": False})[0] == 400  # an unknown key


def test_an_error_mid_stream_is_an_event_and_the_end(apps):
    status, _, body = post(apps["words"], {"inputs": "one boom two", "stream": True})
    events = body.decode().split("\n\n")
    assert status == 200 and events[0] == 'data: {"word": "one", "n": 0}'
    error = json.loads(events[1].removeprefix("data: "))
    assert error["error_code"] == "INTERNAL_ERROR" and "error id" in error["message"]
    assert events[2:] == ["data: [DONE]", ""]


def test_a_model_without_predict_stream_is_a_400(apps):
    status, media, body = post(apps["plain"], {"inputs": "x", "stream": True})
    assert status == 400 and media == "application/json"
    assert "predict_stream" in json.loads(body)["message"]
