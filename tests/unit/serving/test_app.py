"""Response bodies and sizes: the parts of the server that need no running model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from envkit.errors import UsageError
from envkit.serving.app import predictions_to_json
from envkit.serving.server import parse_size


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
