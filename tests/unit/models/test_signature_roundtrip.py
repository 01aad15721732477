"""Property: infer -> save -> load -> enforce round-trips DataFrames of random column types.

Two levels: the format functions alone (signature through an MLmodel file, enforcement, the
serving payload), and the whole thing through ``envkit.pyfunc.save_model``/``load_model``.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envkit.pyfunc
from envkit.models import infer_signature, validate_serving_input
from envkit.models.enforcement import validate_prediction_input
from envkit.models.input_example import to_serving_input
from envkit.models.model import Model
from envkit.models.serving_input import parse_serving_input

SAFE_INT = 2**53  # JSON numbers are doubles for many clients; envkit keeps larger ints exact


def _floats(width: int):
    return st.floats(width=width, allow_nan=False, allow_infinity=False)


def _column(kind: str, n: int):
    """A strategy for one column of ``n`` values of ``kind``."""
    values = {
        "bool": st.lists(st.booleans(), min_size=n, max_size=n).map(np.array),
        "int8": st.lists(st.integers(-128, 127), min_size=n, max_size=n).map(
            lambda v: np.array(v, dtype=np.int8)
        ),
        "int32": st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n, max_size=n).map(
            lambda v: np.array(v, dtype=np.int32)
        ),
        "int64": st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n).map(
            lambda v: np.array(v, dtype=np.int64)
        ),
        "uint16": st.lists(st.integers(0, 2**16 - 1), min_size=n, max_size=n).map(
            lambda v: np.array(v, dtype=np.uint16)
        ),
        "float32": st.lists(_floats(32), min_size=n, max_size=n).map(
            lambda v: np.array(v, dtype=np.float32)
        ),
        "float64": st.lists(_floats(64) | st.none(), min_size=n, max_size=n).map(
            lambda v: np.array([np.nan if x is None else x for x in v], dtype=np.float64)
        ),
        "str": st.lists(st.text(max_size=5) | st.none(), min_size=n, max_size=n).map(
            lambda v: pd.array(v, dtype="str")
        ),
        "bytes": st.lists(st.binary(max_size=6), min_size=n, max_size=n).map(
            lambda v: pd.array(v, dtype=object)
        ),
        "datetime": st.lists(
            st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2200, 1, 1)), min_size=n, max_size=n
        ).map(lambda v: pd.array(pd.to_datetime(v).as_unit("ns"))),
        "Int64": st.lists(st.integers(-SAFE_INT, SAFE_INT) | st.none(), min_size=n, max_size=n).map(
            lambda v: pd.array(v, dtype="Int64")
        ),
        "boolean": st.lists(st.booleans() | st.none(), min_size=n, max_size=n).map(
            lambda v: pd.array(v, dtype="boolean")
        ),
        "list": st.lists(
            st.lists(st.integers(-1000, 1000), min_size=1, max_size=3), min_size=n, max_size=n
        ).map(lambda v: pd.array(v, dtype=object)),
        "dict": st.lists(
            st.fixed_dictionaries({"k": _floats(64)}, optional={"tag": st.text(max_size=3)}),
            min_size=n,
            max_size=n,
        ).map(lambda v: pd.array(v, dtype=object)),
    }
    return values[kind]


KINDS = [
    "bool",
    "int8",
    "int32",
    "int64",
    "uint16",
    "float32",
    "float64",
    "str",
    "bytes",
    "datetime",
    "Int64",
    "boolean",
    "list",
    "dict",
]


@st.composite
def frames(draw):
    n = draw(st.integers(1, 4))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=5))
    data = {f"c{i}_{kind}": draw(_column(kind, n)) for i, kind in enumerate(kinds)}
    return pd.DataFrame(data)


def _assert_same_values(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.columns) == list(expected.columns)
    for col in expected.columns:
        got, want = actual[col].tolist(), expected[col].tolist()
        assert len(got) == len(want)
        for g, w in zip(got, want):
            if pd.api.types.is_scalar(w) and pd.isna(w):
                assert pd.api.types.is_scalar(g) and pd.isna(g), (col, got, want)
            elif isinstance(w, float):
                assert g == w or np.float32(g) == np.float32(w), (col, got, want)
            else:
                assert g == w, (col, got, want)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=frames())
def test_infer_save_load_enforce_round_trip(df):
    signature = infer_signature(df)
    with tempfile.TemporaryDirectory() as tmp:
        Model(flavors={"python_function": {}}, signature=signature).save(tmp)
        loaded = Model.load(tmp).signature
    assert loaded == signature
    assert loaded.to_dict() == signature.to_dict()

    enforced, params = validate_prediction_input(df, None, loaded)
    assert params is None
    _assert_same_values(enforced, df)

    # As a client would send it to the scoring server.
    data, params = parse_serving_input(to_serving_input(df), schema=loaded.inputs)
    served, _ = validate_prediction_input(data, params, loaded)
    _assert_same_values(served, df)


class Echo(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=frames())
def test_round_trip_through_saved_pyfunc_models(df):
    signature = infer_signature(df)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        envkit.pyfunc.save_model(path, python_model=Echo(), input_example=df, signature=signature)
        model = envkit.pyfunc.load_model(path)
        assert model.metadata.signature == signature
        _assert_same_values(model.predict(df), df)
        served = validate_serving_input(path, (path / "serving_input_example.json").read_text())
        _assert_same_values(served, df)


def test_signature_inferred_at_save_is_the_one_of_the_in_memory_example(tmp_path):
    df = pd.DataFrame(
        {"small": np.array([1, 2], dtype=np.int8), "when": pd.to_datetime(["2020-01-01"] * 2)}
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo(), input_example=df)
    assert Model.load(tmp_path / "m").signature.inputs == infer_signature(df).inputs
