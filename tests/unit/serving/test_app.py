"""Response bodies and sizes: the parts of the server that need no running model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from envkit.errors import UsageError
from envkit.serving.app import DEFAULT_MAX_BODY_BYTES, predictions_to_json
from envkit.serving.server import ENV_MAX_BODY, parse_size, resolve_max_body_bytes


@pytest.mark.parametrize(
    "value, expected",
    [
        (np.array([1, 2]), [1, 2]),
        (np.array([[0.5], [1.5]]), [[0.5], [1.5]]),
        (pd.Series([1, 2]), [1, 2]),
        (pd.DataFrame({"a": [1], "b": ["x"]}), [{"a": 1, "b": "x"}]),
        ({"a": np.int64(3)}, {"a": 3}),
        (["x", 1], ["x", 1]),
        ("text", "text"),
    ],
    ids=["ndarray", "2d", "series", "dataframe", "dict", "list", "str"],
)
def test_predictions_are_sent_as_mlflow_does(value, expected):
    assert json.loads(predictions_to_json(value)) == {"predictions": expected}


@pytest.mark.parametrize(
    "text, expected",
    [("1048576", 1048576), ("512k", 512 * 1024), ("50MB", 50 * 1024**2), ("1GiB", 1024**3)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "0", "ten", "5 parsecs"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(UsageError):
        parse_size(text)


def test_bytes_and_dates_are_sent_as_mlflow_sends_them():
    import datetime

    sent = json.loads(predictions_to_json([b"\xff\x00", datetime.date(2024, 5, 1)]))
    assert sent == {"predictions": ["/wA=\n", "2024-05-01"]}  # base64.encodebytes, ISO
    frame = pd.DataFrame({"t": pd.to_datetime(["2024-05-01"]), "x": [None]})
    assert json.loads(predictions_to_json(frame)) == {
        "predictions": [{"t": "2024-05-01T00:00:00", "x": None}]
    }


@pytest.mark.parametrize("value", [object(), [1, object()], {"a": {1, 2}}])
def test_predictions_with_no_json_form_are_refused_not_stringified(value):
    with pytest.raises(TypeError, match="has no JSON form"):
        predictions_to_json(value)


def test_the_body_limit_comes_from_the_option_then_the_variable_then_the_default(monkeypatch):
    monkeypatch.delenv(ENV_MAX_BODY, raising=False)
    assert resolve_max_body_bytes(None) == DEFAULT_MAX_BODY_BYTES
    monkeypatch.setenv(ENV_MAX_BODY, "100")
    assert resolve_max_body_bytes(None) == 100
    assert resolve_max_body_bytes("2k") == 2048
    monkeypatch.setenv(ENV_MAX_BODY, "abc")
    with pytest.raises(UsageError, match="invalid ENVKIT_SERVE_MAX_BODY_BYTES 'abc'"):
        resolve_max_body_bytes(None)
    assert resolve_max_body_bytes("1MB") == 1024**2  # the option wins, even over a bad value
    with pytest.raises(UsageError, match="invalid --max-body-size 'ten'"):
        resolve_max_body_bytes("ten")


def test_predictions_json_is_the_same_with_and_without_orjson() -> None:
    """The orjson path (used when orjson is installed) writes what json.dumps writes."""
    import json

    import numpy as np

    from envkit.serving.scoring import _orjson_numeric, predictions_to_json

    for array in (
        np.array([0, 1, 2]),
        np.array([[0.1, 2.5e-300], [1.0, -3.0]]),
        np.array([True, False]),
        np.array([0.5, np.nan]),
    ):
        assert json.loads(predictions_to_json(array)) == json.loads(
            json.dumps({"predictions": array.tolist()})
        )
    assert _orjson_numeric(np.array([np.nan]), "f") is None  # json writes NaN, orjson null


def test_payload_parsing_is_the_same_with_and_without_orjson() -> None:
    from envkit.models.serving_input import decode_json_payload

    body = b'{"dataframe_split": {"columns": ["a"], "data": [[1.5], [2]]}}'
    assert decode_json_payload(body) == {
        "dataframe_split": {"columns": ["a"], "data": [[1.5], [2]]}
    }
    # orjson refuses NaN and big integers: the stdlib parser still reads them.
    assert decode_json_payload(b'{"inputs": [NaN, 123456789012345678901234567890]}')["inputs"][
        1
    ] == (123456789012345678901234567890)
