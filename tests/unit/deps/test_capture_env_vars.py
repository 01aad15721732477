"""environment_variables.txt: allowlisted names read during inference, never values."""

from __future__ import annotations

import pytest
import yaml
from capture_helpers import model_importing

import envkit.pyfunc
from envkit.deps.envvars import ENV_VAR_FILE_HEADER

pytestmark = pytest.mark.capture  # these test the capture subprocess itself

SECRET = "value-that-must-never-be-written-4f2a"


def _all_bytes(model_dir) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file())


class SeedModel(envkit.pyfunc.PythonModel):
    """The example of MLflow's documentation (MLflow 3.17.2's save_model does not record it)."""

    def predict(self, context, model_input, params=None):
        import os

        if os.environ.get("TEST_API_KEY"):
            return model_input
        raise Exception("API key not found")


def test_the_seed_example_records_test_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_API_KEY", SECRET)
    envkit.pyfunc.save_model(tmp_path / "m", python_model=SeedModel(), input_example="data")
    text = (tmp_path / "m" / "environment_variables.txt").read_text()
    assert text == ENV_VAR_FILE_HEADER + "TEST_API_KEY\n"
    assert text.startswith("# This file records environment variable names that are used")
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert mlmodel["env_vars"] == ["TEST_API_KEY"]
    meta = tmp_path / "m" / "metadata" / "environment_variables.txt"
    assert meta.read_text() == text
    assert SECRET.encode() not in _all_bytes(tmp_path / "m")


def test_every_way_of_reading_is_recorded_and_only_allowlisted_names(tmp_path, monkeypatch):
    for name in ("A_API_KEY", "B_API_TOKEN", "DATABRICKS_HOST", "HOME_DIRISH"):
        monkeypatch.setenv(name, SECRET)
    monkeypatch.delenv("D_API_KEY", raising=False)
    model = model_importing(
        "import os",
        "os.environ['A_API_KEY']",
        "'B_API_TOKEN' in os.environ",
        "os.getenv('DATABRICKS_HOST')",
        "os.environ.get('D_API_KEY')",
        "os.environ.get('HOME_DIRISH')",
        where="predict",
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model, input_example="x")
    names = (tmp_path / "m" / "environment_variables.txt").read_text().splitlines()[3:]
    # D_API_KEY is unset here but was read: the deployment may need to set it.
    assert names == ["A_API_KEY", "B_API_TOKEN", "DATABRICKS_HOST", "D_API_KEY"]
    assert SECRET.encode() not in _all_bytes(tmp_path / "m")


@pytest.mark.parametrize(
    "switch", ["ENVKIT_RECORD_ENV_VARS_IN_MODEL_LOGGING", "MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING"]
)
def test_recording_can_be_turned_off(tmp_path, monkeypatch, switch):
    monkeypatch.setenv("TEST_API_KEY", SECRET)
    monkeypatch.setenv(switch, "false")
    envkit.pyfunc.save_model(tmp_path / "m", python_model=SeedModel(), input_example="data")
    assert not (tmp_path / "m" / "environment_variables.txt").exists()
    assert "env_vars" not in yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())


@pytest.mark.parametrize(("value", "recorded"), [("TRUE", True), ("Yes", True), ("No", False)])
def test_switch_values_are_read_like_mlflows_booleans(tmp_path, monkeypatch, value, recorded):
    monkeypatch.setenv("TEST_API_KEY", SECRET)
    monkeypatch.setenv("ENVKIT_RECORD_ENV_VARS_IN_MODEL_LOGGING", value)
    envkit.pyfunc.save_model(tmp_path / "m", python_model=SeedModel(), input_example="data")
    assert (tmp_path / "m" / "environment_variables.txt").exists() is recorded


@pytest.mark.parametrize(
    "switch", ["ENVKIT_RECORD_ENV_VARS_IN_MODEL_LOGGING", "MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING"]
)
@pytest.mark.parametrize("pip_requirements", [None, ["envkit"]])
def test_an_invalid_switch_value_is_an_error(tmp_path, monkeypatch, switch, pip_requirements):
    """Not silently true (the audit's 'bogus'); the message never repeats the value."""
    from envkit.errors import UsageError

    monkeypatch.setenv(switch, "bogus-switch-value")
    with pytest.raises(UsageError, match=rf"^{switch} must be true or false") as info:
        envkit.pyfunc.save_model(
            tmp_path / "m", python_model=SeedModel(), pip_requirements=pip_requirements
        )
    assert "bogus-switch-value" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_reads_no_listed_names_has_no_file(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model_importing(), input_example="x")
    assert not (tmp_path / "m" / "environment_variables.txt").exists()


def test_secret_values_in_a_capture_error_are_redacted(tmp_path, monkeypatch):
    from envkit.deps.capture import CaptureWarning

    monkeypatch.setenv("SERVICE_API_KEY", SECRET)
    model = model_importing(
        "import os", "raise ValueError('bad key ' + os.environ['SERVICE_API_KEY'])"
    )
    with pytest.warns(CaptureWarning) as record:
        envkit.pyfunc.save_model(tmp_path / "m", python_model=model)
    assert "bad key ***" in str(record[0].message)
    assert SECRET not in str(record[0].message)
    assert SECRET.encode() not in _all_bytes(tmp_path / "m")


def test_names_are_recorded_when_pip_requirements_replace_inference(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_API_KEY", SECRET)
    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=SeedModel(),
        input_example="data",
        pip_requirements=["envkit", "cloudpickle"],
    )
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert lines[0] == "envkit" and lines[-1] == "cloudpickle"  # (pandas, numpy: a signature)
    names = (tmp_path / "m" / "environment_variables.txt").read_text().splitlines()[3:]
    assert names == ["TEST_API_KEY"]


def test_secret_values_in_a_failing_input_example_are_redacted(tmp_path, monkeypatch):
    """The example is checked in the saving process too: its failure must not quote the key,
    and it says what the capture then misses (and records why in the provenance)."""
    import json

    from envkit.errors import ModelFailedError

    monkeypatch.setenv("TEST_API_KEY", SECRET)
    model = model_importing(
        "import os", "raise ValueError('bad key ' + os.environ['TEST_API_KEY'])", where="predict"
    )
    with pytest.warns(UserWarning, match="failed to predict on its input example") as record:
        envkit.pyfunc.save_model(tmp_path / "m", python_model=model, input_example="x")
    message = next(str(w.message) for w in record if "input example" in str(w.message))
    assert "bad key ***" in message and SECRET not in message
    assert "read only while predicting may be missing" in message
    capture = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())["capture"]
    assert capture["predicted"] is False
    assert "input example failed to predict when saving" in capture["reason"]
    assert SECRET.encode() not in _all_bytes(tmp_path / "m")

    with pytest.raises(ModelFailedError, match=r"bad key \*\*\* \(strict mode\)") as info:
        envkit.pyfunc.save_model(tmp_path / "s", python_model=model, input_example="x", strict=True)
    assert SECRET not in str(info.value)
    assert not (tmp_path / "s").exists()


def test_a_line_that_is_not_a_variable_name_is_a_format_error(tmp_path, monkeypatch, capsys):
    """The names go into Dockerfiles and labels: a quote or a backslash there is refused."""
    from envkit.cli import main
    from envkit.deps.envvars import read_env_vars_file
    from envkit.errors import ModelFormatError

    monkeypatch.setenv("TEST_API_KEY", SECRET)
    envkit.pyfunc.save_model(tmp_path / "m", python_model=SeedModel(), input_example="data")
    path = tmp_path / "m" / "environment_variables.txt"
    path.write_text(path.read_text() + 'MY_API_KEY" \\\n')
    with pytest.raises(ModelFormatError, match=r"environment_variables\.txt:5: .* is not an"):
        read_env_vars_file(tmp_path / "m")
    assert main(["generate-dockerfile", str(tmp_path / "m"), "-o", str(tmp_path / "out")]) == 2
    assert "is not an environment variable name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
