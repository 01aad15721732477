"""envkit.diviner in this interpreter, which cannot have diviner (its last release fails with
pandas 3): the registration, MLflow's configuration frame, what the loader refuses before it
imports diviner, and the missing library named. Saving, loading, forecasting and MLflow 2.12
interop run in diviner's own virtualenv: tests/e2e/test_flavor_diviner.py."""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import envkit.diviner
import envkit.models.scan
import envkit.pyfunc
from envkit.diviner import ForecastConfig
from envkit.errors import (
    LoaderImportError,
    ModelFormatError,
    SchemaEnforcementError,
    UnsafeModelError,
)
from envkit.models.flavors import envkit_loader_for, registered_flavors

try:
    import diviner  # noqa: F401

    HAS_DIVINER = True
except ImportError:  # pandas 3 here: the library's absence is what these tests use
    HAS_DIVINER = False

needs_no_diviner = pytest.mark.skipif(HAS_DIVINER, reason="diviner is installed here")


def test_the_flavor_is_registered_and_stands_in_for_mlflows_loader():
    assert registered_flavors()["diviner"] == "envkit.diviner"
    assert envkit_loader_for("mlflow.diviner") == "envkit.diviner"
    assert envkit.diviner.FLAVOR_NAME == "diviner"


def test_importing_the_flavor_imports_no_library():
    code = (
        "import sys, envkit.diviner; "
        "print([m for m in ('diviner', 'pandas', 'prophet', 'pmdarima') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def write_model(root: Path, flavor: dict, payload: str) -> Path:
    """A model directory as mlflow.diviner writes it, with ``payload`` as its model.div."""
    root.mkdir()
    section = {"code": None, "data": "model.div", "diviner_version": "0.1.1"}
    section.update({"fit_with_spark": False, "model_type": "GroupedPmdarima"}, **flavor)
    pyfunc = {"loader_module": "mlflow.diviner", "data": "model.div", "python_version": "3.11"}
    mlmodel = {"flavors": {"diviner": section, "python_function": pyfunc}}
    (root / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    (root / "model.div").write_text(payload)
    return root


class RunsACommand:
    """Unpickling this calls os.system: the scanner must refuse it unread."""

    def __reduce__(self):
        return (os.system, ("echo unpickled",))


def grouped_pmdarima_file(group_model: object) -> str:
    """model.div as diviner writes a GroupedPmdarima: base64 pickles in JSON."""

    def encode(value: object) -> str:
        return base64.urlsafe_b64encode(pickle.dumps(value)).decode()

    return json.dumps(
        {"_model_template": encode(None), "_model": {encode(("north",)): encode(group_model)}}
    )


def test_a_dangerous_pickle_inside_model_div_is_refused_before_anything_loads(tmp_path):
    model = write_model(tmp_path / "m", {}, grouped_pmdarima_file(RunsACommand()))
    with pytest.raises(UnsafeModelError, match="posix.system|os.system") as caught:
        envkit.diviner.load_model(model)
    assert "model.div" in caught.value.message
    with pytest.raises(UnsafeModelError):
        envkit.pyfunc.load_model(model)


@needs_no_diviner
def test_a_missing_diviner_is_one_line_naming_the_package(tmp_path):
    model = write_model(tmp_path / "m", {}, grouped_pmdarima_file({"order": (1, 0, 0)}))
    expected = "the diviner flavor needs the package 'diviner', which is not installed"
    with pytest.raises(LoaderImportError, match=expected):
        envkit.diviner.load_model(model)
    with pytest.raises(LoaderImportError, match=expected):
        envkit.diviner.save_model(object(), tmp_path / "saved")
    assert not (tmp_path / "saved").exists()


@pytest.mark.parametrize(
    ("flavor", "message"),
    [
        ({"fit_with_spark": True}, "fit with Spark"),
        ({"model_type": "os.system"}, "model_type is 'os.system'"),
    ],
)
def test_what_the_loader_cannot_load_is_a_format_error(tmp_path, flavor, message):
    model = write_model(tmp_path / "m", flavor, "{}")
    with pytest.raises(ModelFormatError, match=message):
        envkit.diviner.load_model(model)


def test_a_grouped_pmdarima_file_that_is_not_json_is_a_format_error(tmp_path):
    model = write_model(tmp_path / "m", {}, "not json")
    with pytest.raises(ModelFormatError, match="not a diviner GroupedPmdarima file"):
        envkit.diviner.load_model(model)


# --- MLflow's configuration frame ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"frequency": ["D"]}), "does not contain either"),
        (pd.DataFrame({"n_periods": [0]}), "does not contain either"),
        (pd.DataFrame({"n_periods": [3], "horizon": [4]}), "with different values"),
        (pd.DataFrame({"n_periods": [1.5]}), "Supplied type must be an integer"),
        (pd.DataFrame({"n_periods": [3]}, index=[5]), "no row with index 0"),
        ([[3]], "got a list"),
    ],
)
def test_a_bad_configuration_is_a_schema_error_in_mlflows_words(frame, message):
    with pytest.raises(SchemaEnforcementError, match=message):
        ForecastConfig.from_frame(frame).n_periods()


def test_horizon_stands_for_n_periods_and_groups_become_tuples():
    frame = pd.DataFrame({"horizon": [4], "frequency": ["D"], "groups": [[["a", 1], ["b", 2]]]})
    config = ForecastConfig.from_frame(frame)
    assert config.n_periods() == 4
    assert config.groups() == [("a", 1), ("b", 2)]
    assert ForecastConfig.from_frame(pd.DataFrame({"n_periods": [2]})).groups() is None


def test_groups_that_are_not_a_list_are_refused():
    config = ForecastConfig.from_frame(pd.DataFrame({"n_periods": [2], "groups": ["north"]}))
    with pytest.raises(SchemaEnforcementError, match="groups to be defined as a"):
        config.groups()


def test_envkit_scan_sees_the_pickles_inside_model_div(tmp_path):
    """The scan command (and every scan: info, validate, build-docker) reports the pickles a
    GroupedPmdarima keeps in JSON, as the loader refuses them: not 'safe'."""
    model = write_model(tmp_path / "m", {}, grouped_pmdarima_file(RunsACommand()))
    proc = subprocess.run(
        [sys.executable, "-m", "envkit", "scan", str(model), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "dangerous"
    flagged = [f for f in report["files"] if f["dangerous"]]
    assert flagged and all(f["path"].startswith("model.div") for f in flagged)
    clean = write_model(tmp_path / "clean", {}, grouped_pmdarima_file({"order": (1, 0, 0)}))
    assert envkit.models.scan.scan_model(clean).exit_code == 0
    # The template, the pickled group key and the group model.
    assert len(envkit.models.scan.scan_model(clean).files) == 3
