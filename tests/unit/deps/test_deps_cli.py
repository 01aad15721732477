"""envkit deps / infer / lock on the command line."""

from __future__ import annotations

import json

import pytest
from capture_helpers import model_importing, requirement_names

import envkit.pyfunc
from envkit.cli import main
from envkit.deps.capture import RequirementWarning
from envkit.models import update_model_requirements

pytestmark = pytest.mark.capture  # deps shows and infer re-runs what the capture recorded


@pytest.fixture
def model(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model_importing("import yaml"))
    return tmp_path / "m"


def test_deps_lists_requirements_with_provenance(model, capsys):
    assert main(["deps", str(model)]) == 0
    out = capsys.readouterr().out
    assert "pyyaml==" in out and "inferred from yaml" in out
    assert "envkit==" in out and "(flavor" in out
    assert "this environment satisfies the model's requirements" in out


def test_deps_check_json_for_ci(model, capsys):
    assert main(["deps", str(model), "--check", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    yaml_row = next(r for r in data["requirements"] if r["name"] == "pyyaml")
    assert yaml_row["satisfied"] and yaml_row["provenance"]["modules"] == ["yaml"]

    update_model_requirements(model, "add", ["not-installed-pkg-zz==2.0"])
    assert main(["deps", str(model), "--check", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert data["mismatches"] == [
        {"name": "not-installed-pkg-zz", "current": None, "required": "not-installed-pkg-zz==2.0"}
    ]
    assert main(["deps", str(model), "--check"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert main(["deps", str(model)]) == 0  # without --check, listing is not a failure


def test_infer_shows_the_diff_and_writes_it(model, capsys):
    assert main(["infer", str(model)]) == 0
    assert "match what the model imports" in capsys.readouterr().out

    update_model_requirements(model, "remove", ["pyyaml"])
    # (packaging: installed wherever envkit is, and not something the model imports)
    with pytest.warns(RequirementWarning, match=r"does not satisfy the added 'packaging==1\.0'"):
        update_model_requirements(model, "add", ["packaging==1.0"])
    assert main(["infer", str(model)]) == 0
    out = capsys.readouterr().out
    assert "+ pyyaml==" in out
    assert "run with --write" in out
    assert "pyyaml" not in requirement_names(model)
    assert "packaging==1.0" in (model / "requirements.txt").read_text()  # a user line is kept

    assert main(["infer", str(model), "--write", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["written"] is True
    assert {"kind": "added", "name": "pyyaml", "old": None, "new": data["inferred"][2]} in (
        data["changes"]
    )
    assert requirement_names(model) == {"envkit", "cloudpickle", "pyyaml", "packaging"}
    meta = (model / "metadata" / "requirements.txt").read_text()
    assert meta == (model / "requirements.txt").read_text()
    assert main(["infer", str(model)]) == 0
    assert "match what the model imports" in capsys.readouterr().out


def test_infer_on_a_model_that_does_not_load_fails_clearly(model, capsys):
    (model / "python_model.pkl").write_bytes(b"not a pickle")
    assert main(["infer", str(model)]) == 1
    err = capsys.readouterr().err
    assert "error: capturing the model's requirements failed" in err
    assert "python_model.pkl cannot be deserialized" in err


def test_deps_on_a_missing_model(tmp_path, capsys):
    assert main(["deps", str(tmp_path / "nothing")]) == 2
    assert "no model at" in capsys.readouterr().err


# -- deps --check on broken models: an error, never "satisfied" (audit B5, B3, E2) ----------------


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (
            lambda m: (m / "requirements.txt").unlink(),
            r"error: requirements\.txt, which python_env\.yaml names, is missing from the model",
        ),
        (
            lambda m: (m / "python_env.yaml").write_text("python: [3.11\n"),
            r"error: .*python_env\.yaml is not valid YAML \(line 2\): ",
        ),
        (
            lambda m: (m / "requirements.txt").write_text("pyyaml\nx!!"),
            r"error: invalid requirement in requirements\.txt:2 'x!!': Expected ",
        ),
    ],
    ids=["requirements-missing", "python-env-invalid-yaml", "invalid-line"],
)
def test_deps_check_refuses_a_model_whose_environment_cannot_be_read(
    model, capsys, breakage, expected
):
    import re

    breakage(model)
    assert main(["deps", str(model), "--check"]) == 2
    captured = capsys.readouterr()
    assert "satisfies" not in captured.out
    assert len(captured.err.splitlines()) == 1, captured.err
    assert re.match(expected, captured.err), captured.err


def test_deps_on_an_mlflow_model_says_mlflow_is_not_needed(tmp_path, capsys):
    import shutil

    from capture_helpers import SAMPLES

    shutil.copytree(SAMPLES / "sk_infer", tmp_path / "sk")
    main(["deps", str(tmp_path / "sk"), "--check"])  # (the sample's pins are not this env's)
    out = capsys.readouterr().out
    assert "[not needed] mlflow==3.17.2: envkit loads this model with its own loader" in out
    assert "[        ok] mlflow" not in out
    main(["deps", str(tmp_path / "sk"), "--format", "json"])
    row = next(
        r for r in json.loads(capsys.readouterr().out)["requirements"] if r["name"] == "mlflow"
    )
    assert row["status"] == "not needed"
    assert row["note"] == "not needed: envkit loads this model with its own loader"


def test_deps_shows_the_lines_requirements_txt_has_not_the_captured_ones(model, capsys):
    """Edited by hand after the save: the listing shows the edited line (and says the capture
    recorded another), and a requirement whose marker excludes this platform is n/a."""
    path = model / "requirements.txt"
    lines = path.read_text().splitlines()
    captured = next(line for line in lines if line.startswith("pyyaml=="))
    lines[lines.index(captured)] = "pyyaml==5.0"
    lines.append('not-installed-pkg-zz==1.0; sys_platform == "win32"')
    path.write_text("\n".join(lines))
    assert main(["deps", str(model), "--check"]) == 1
    out = capsys.readouterr().out
    assert f"pyyaml==5.0  (edited after the capture, which recorded {captured})" in out
    assert captured + "  (" not in out
    assert "[       n/a] not-installed-pkg-zz==1.0" in out
    assert main(["deps", str(model), "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["requirements"]}
    assert rows["not-installed-pkg-zz"]["status"] == "not applicable"
    assert rows["pyyaml"]["status"] == "mismatch"


def test_infer_write_keeps_mlmodel_python_version_with_the_env_files(model, capsys):
    """A model saved elsewhere (here: MLmodel says 3.8.0) re-captured on this interpreter: the
    environment files and MLmodel's python_version agree afterwards."""
    import platform

    import yaml

    mlmodel = model / "MLmodel"
    data = yaml.safe_load(mlmodel.read_text())
    data["flavors"]["python_function"]["python_version"] = "3.8.0"
    mlmodel.write_text(yaml.safe_dump(data))
    update_model_requirements(model, "remove", ["pyyaml"])
    assert main(["infer", str(model), "--write"]) == 0
    capsys.readouterr()
    data = yaml.safe_load(mlmodel.read_text())
    assert data["flavors"]["python_function"]["python_version"] == platform.python_version()
    python_env = yaml.safe_load((model / "python_env.yaml").read_text())
    assert python_env["python"] == platform.python_version()
    assert (model / "metadata" / "MLmodel").read_text() == mlmodel.read_text()


@pytest.mark.parametrize("command", ["infer", "lock"])
@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_timeout_that_is_not_positive_is_a_usage_error(model, capsys, command, value):
    assert main([command, str(model), "--timeout", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --timeout must be a positive number of seconds")
    assert not (model / "requirements.lock").exists()
