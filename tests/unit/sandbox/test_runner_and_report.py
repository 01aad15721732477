"""The in-env runner (run here, in-process) and the three report renderings."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from envkit.sandbox import runner
from envkit.sandbox.report import render
from envkit.sandbox.validate import ValidationReport


def _request(tmp_path: Path, model: Path, **extra) -> dict:
    return {
        "model_dir": str(model),
        "result_path": str(tmp_path / "result.json"),
        "status_path": str(tmp_path / "status.json"),
        "requirements": ["scikit-learn>=1.0", "surely-not-installed-dist==1.0"],
        **extra,
    }


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory, iris, iris_pipeline):
    import envkit.sklearn

    path = tmp_path_factory.mktemp("runner") / "iris"
    envkit.sklearn.save_model(iris_pipeline, path, input_example=iris[0].head(3))
    return path


def test_the_runner_loads_predicts_and_reports(tmp_path, iris_model):
    request = _request(tmp_path, iris_model, predictions_path=str(tmp_path / "pred.json"))
    assert runner.execute(request) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["ok"] and result["stage"] == "done"
    assert result["loader"] == "envkit.pyfunc.load_model"
    assert result["output"]["type"] == "numpy.ndarray" and result["output"]["shape"] == [3]
    assert set(result["timings"]) == {"load", "input", "predict"}
    assert result["mismatches"] == [
        {
            "requirement": "surely-not-installed-dist==1.0",
            "installed": "",
            "problem": "not installed",
        }
    ]
    assert json.loads((tmp_path / "pred.json").read_text()) == {"predictions": [0, 0, 0]}


def test_the_runner_reads_serving_payloads(tmp_path, iris_model, iris):
    payload = tmp_path / "payload.json"
    X = iris[0]
    payload.write_text(json.dumps({"dataframe_records": X.tail(2).to_dict(orient="records")}))
    request = _request(tmp_path, iris_model, input_path=str(payload), content_type="json")
    assert runner.execute(request) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["input"] == {"source": "file"} and result["output"]["shape"] == [2]


def test_a_bad_payload_is_reported_at_the_input_stage(tmp_path, iris_model):
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"columns": ["a"]}))
    assert runner.execute(_request(tmp_path, iris_model, input_path=str(payload))) == 1
    result = json.loads((tmp_path / "result.json").read_text())
    assert not result["ok"] and result["error"]["stage"] == "input"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["stage"] == "input"


def test_fallback_serving_payloads():
    data, params = runner._fallback_serving_input(
        {"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}, "params": {"k": 1}}
    )
    assert isinstance(data, pd.DataFrame) and list(data["a"]) == [1, 2] and params == {"k": 1}
    data, _ = runner._fallback_serving_input({"instances": [[1, 2], [3, 4]]})
    assert isinstance(data, np.ndarray) and data.shape == (2, 2)
    with pytest.raises(ValueError, match="exactly one of"):
        runner._fallback_serving_input({"inputs": 1, "instances": 2})


def test_outputs_are_described_and_serialized():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    described = runner.describe_output(frame)
    assert described["type"] == "pandas.DataFrame" and described["shape"] == [2, 2]
    assert runner.to_jsonable(frame) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert runner.to_jsonable(np.array([1.5, 2.5])) == [1.5, 2.5]
    assert runner.to_jsonable({"k": np.int64(3)}) == {"k": 3}
    assert runner.describe_output([1, 2, 3])["preview"] == "[1, 2, 3]"


def _report(**changes) -> ValidationReport:
    report = ValidationReport(
        model="/models/iris",
        backend="uv",
        tools={"uv": "0.13.9"},
        interpreter={
            "path": "/py/3.11.7/bin/python",
            "version": "3.11.7",
            "recorded": "3.11.7",
            "requested": "3.11.7",
            "exact": True,
        },
        spec={
            "requirements": ["envkit==0.1.0", "scikit-learn==1.9.1"],
            "source": "python_env.yaml + requirements.txt",
            "key": "abc",
        },
        cache={"used": True, "hit": True, "reason": "cached", "key": "abc", "path": "/c/abc.1"},
        timings={"install": 0.0, "load": 0.8, "predict": 0.01, "total": 1.2},
        loader="envkit.pyfunc.load_model",
        input={"source": "input_example"},
        output={"type": "numpy.ndarray", "shape": [3], "dtype": "int64", "preview": "[0 0 0]"},
    )
    for key, value in changes.items():
        setattr(report, key, value)
    return report


def test_text_report():
    text = render(_report(), "text")
    lines = text.splitlines()
    assert (
        lines[0]
        == "OK: the model loaded and predicted in a rebuilt environment (uv, Python 3.11.7)"
    )
    assert "  environment   cache hit: cached [abc]" in lines
    assert any(
        line.strip() == "timings       install 0.00s  load 0.80s  predict 0.01s  total 1.20s"
        for line in lines
    )
    assert "numpy.ndarray shape (3,) int64" in text


def test_failure_reports_lead_with_what_failed():
    report = _report(
        status="model_failed",
        exit_code=1,
        output=None,
        error={
            "kind": "predict",
            "stage": "predict",
            "message": "predict raised ValueError: x",
            "detail": "Traceback ...",
        },
    )
    assert render(report, "text").startswith("FAILED: predict raised ValueError: x\n")
    assert "Traceback" in render(report, "text", verbose=True)
    data = json.loads(render(report, "json"))
    assert data["ok"] is False and data["exit_code"] == 1 and data["error"]["kind"] == "predict"
    suite = ET.fromstring(render(report, "junit")).find("testsuite")
    assert suite is not None and suite.get("failures") == "1" and suite.get("errors") == "0"
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("message") == "predict raised ValueError: x"
    with pytest.raises(Exception, match="predict raised ValueError"):
        report.raise_for_error()


def test_environment_failures_are_junit_errors():
    report = _report(
        status="env_failed",
        exit_code=3,
        output=None,
        error={"kind": "SubprocessError", "message": "installing failed", "detail": None},
    )
    suite = ET.fromstring(render(report, "junit")).find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    assert report.to_error() is not None and report.to_error().exit_code == 3


def test_unrequested_distributions_are_what_no_requirement_needs():
    """Here (the test environment) ruff is installed and nothing pytest or envkit requires
    needs it; pluggy (pytest's) and PyYAML (envkit's runtime) are needed."""
    from envkit.deps.installed import unrequested_distributions

    extra = unrequested_distributions(["pytest"])
    assert "ruff" in extra
    assert "pluggy" not in extra and "pytest" not in extra
    assert "pyyaml" not in extra and "cloudpickle" not in extra  # envkit's runtime
    assert "ruff" not in unrequested_distributions(["pytest", "ruff"])


def test_the_interpreter_row_never_claims_a_recorded_version_the_model_lacks():
    from envkit.sandbox.report import ValidationReport, _interpreter_row

    report = ValidationReport(model="m")
    report.interpreter = {
        "version": "3.11.7",
        "recorded": "3.11.7",
        "requested": "3.11.7",
        "exact": True,
    }
    assert _interpreter_row(report) == "Python 3.11.7 (matches the recorded 3.11.7)"
    report.interpreter = {
        "version": "3.11.7",
        "recorded": None,
        "requested": "3.11.7",
        "exact": True,
        "assumed": "the model records no Python version",
    }
    assert _interpreter_row(report) == "Python 3.11.7 (the model records no Python version)"


def test_the_runner_records_remote_hosts_and_not_loopback_or_unix_sockets():
    """The audit hook's parsing of the events' arguments (PEP 578 signatures)."""
    from envkit.sandbox.runner import _remote_host

    assert _remote_host("socket.getaddrinfo", ("huggingface.co", 443, 0, 1, 0)) == "huggingface.co"
    assert _remote_host("socket.connect", (object(), ("10.1.2.3", 443))) == "10.1.2.3"
    assert _remote_host("socket.gethostbyname", (b"example.com",)) == "example.com"
    assert _remote_host("socket.getaddrinfo", ("localhost", 80, 0, 1, 0)) is None
    assert _remote_host("socket.connect", (object(), ("127.0.0.1", 8080))) is None
    assert _remote_host("socket.connect", (object(), ("::1", 8080, 0, 0))) is None
    assert _remote_host("socket.connect", (object(), "/run/some.sock")) is None
    assert _remote_host("socket.getaddrinfo", (None, 80, 0, 1, 0)) is None
