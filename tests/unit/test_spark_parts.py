"""The parts of spark_udf and the spark flavor that need no Spark: the frames between a Spark
worker and the model's process, predictions as a DataFrame, and the Java a model needs."""

from __future__ import annotations

import io

import pytest


def test_frames_round_trip_and_end_cleanly():
    from envkit.integrations.spark_worker import ERROR, OK, read_frame, write_frame

    stream = io.BytesIO()
    write_frame(stream, OK, b"payload")
    write_frame(stream, ERROR, "reason é".encode())
    write_frame(stream, OK, b"")
    stream.seek(0)
    assert read_frame(stream) == (OK, b"payload")
    assert read_frame(stream) == (ERROR, "reason é".encode())
    assert read_frame(stream) == (OK, b"")
    assert read_frame(stream) is None
    truncated = io.BytesIO(stream.getvalue()[:12])  # a process that died mid-frame
    assert read_frame(truncated) is None


def test_arrow_round_trip_keeps_columns_and_values():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from envkit.integrations.spark_worker import from_arrow, to_arrow

    frame = pd.DataFrame({"x": [1.5, 2.5], "s": ["a", "b"], "n": [1, 2]})
    back = from_arrow(to_arrow(frame))
    assert back.columns.tolist() == ["x", "s", "n"]
    assert back["x"].tolist() == [1.5, 2.5] and back["s"].tolist() == ["a", "b"]
    assert back["n"].tolist() == [1, 2]


def test_predictions_frame_shapes():
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    from envkit.integrations.spark_worker import predictions_frame

    assert predictions_frame(np.array([1, 2])).columns.tolist() == ["0"]
    two = predictions_frame(np.array([[1, 2], [3, 4]]))
    assert two.columns.tolist() == ["0", "1"] and two["1"].tolist() == [2, 4]
    assert predictions_frame([5, 6])["0"].tolist() == [5, 6]
    assert predictions_frame(pd.Series([1], index=[7])).index.tolist() == [0]
    assert predictions_frame({"a": [1]}).columns.tolist() == ["a"]
    with pytest.raises(TypeError, match="not one per row"):
        predictions_frame(3.0)


def _model(flavors):
    from envkit.models.model import Model

    model = Model()
    for name, conf in flavors.items():
        model.add_flavor(name, **conf)
    return model


def test_required_java_from_the_record_or_the_pyspark_version():
    from envkit.sandbox.java import required_java

    assert required_java(_model({"python_function": {"loader_module": "x"}})) is None
    recorded = required_java(_model({"spark": {"java_major_version": 21}}))
    assert (recorded.major, recorded.flavor) == (21, "spark")
    assert required_java(_model({"spark": {"pyspark_version": "4.0.5"}})).major == 17
    assert required_java(_model({"spark": {"pyspark_version": "3.5.1"}})).major == 8


def test_check_java_without_any_java_is_an_environment_error(monkeypatch, tmp_path):
    from envkit.errors import EnvironmentBuildError
    from envkit.sandbox.java import check_java

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(EnvironmentBuildError, match="runs on Java 17, and no java") as info:
        check_java(_model({"spark": {"java_major_version": 17}}))
    assert info.value.exit_code == 3
    check_java(_model({"sklearn": {"pickled_model": "m.pkl"}}))  # no JVM needed: no check
