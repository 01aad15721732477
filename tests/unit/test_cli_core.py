"""The CLI contract for the core: --version, python -m envkit, info, error lines, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import envkit
import envkit.pyfunc

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "mlflow-3.17.2"


def envkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args], capture_output=True, text=True, timeout=120
    )


class Echo(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_version():
    out = envkit_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"envkit {envkit.__version__}"


def test_console_script_is_installed():
    # The script beside this interpreter (its environment's bin/), whatever PATH says.
    script = Path(sysconfig.get_path("scripts")) / "envkit"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"envkit {envkit.__version__}"


def test_info_text_and_json(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    text = envkit_cli("info", str(tmp_path / "m"))
    assert text.returncode == 0, text.stderr
    assert "python_function (loader_module=envkit.pyfunc.model)" in text.stdout
    assert "python_model.pkl" in text.stdout
    data = json.loads(envkit_cli("info", str(tmp_path / "m"), "--format", "json").stdout)
    assert data["flavors"]["python_function"]["loader_module"] == "envkit.pyfunc.model"
    sizes = {f["path"]: f["size"] for f in data["files"]}
    assert sizes["python_model.pkl"] == (tmp_path / "m" / "python_model.pkl").stat().st_size


def test_info_on_an_mlflow_written_model():
    out = envkit_cli("info", str(SAMPLES / "sk_example"))
    assert out.returncode == 0, out.stderr
    assert "MLflow 3.17.2" in out.stdout
    assert "sepal length (cm)" in out.stdout
    assert "scikit-learn==1.9.1" in out.stdout


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "no MLmodel file"),
        (lambda p: (p.mkdir(), (p / "MLmodel").write_text("a: [")), "not valid YAML"),
        (lambda p: (p.mkdir(), (p / "MLmodel").write_text("- 1")), "must be a YAML mapping"),
        (
            lambda p: (
                p.mkdir(),
                (p / "MLmodel").write_text("flavors: {}\nsaved_input_example_info: x"),
            ),
            "'saved_input_example_info' in MLmodel must be a mapping",
        ),
    ],
)
def test_unreadable_models_exit_2_with_one_line(tmp_path, setup, message):
    target = tmp_path / "model"
    setup(target)
    out = envkit_cli("info", str(target))
    assert out.returncode == 2
    assert out.stderr.startswith("error: ")
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    verbose = envkit_cli("info", str(target), "--verbose")
    assert verbose.returncode == 2
    assert "Traceback" in verbose.stderr


def test_no_command_prints_help_and_exits_2():
    out = envkit_cli()
    assert out.returncode == 2
    assert "usage: envkit" in out.stderr


def test_import_envkit_stays_light():
    code = (
        "import sys, envkit, envkit.models, envkit.pyfunc, envkit.sklearn, envkit.spark, "
        "envkit.h2o; "
        "heavy = [m for m in ('pandas', 'numpy', 'sklearn', 'scipy', 'mlflow', 'rich', "
        "'skops', 'uv', 'virtualenv', 'pyspark', 'py4j', 'pyarrow', 'h2o') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_failure_with_detail_is_still_one_line(tmp_path):
    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=Echo(),
        # --no-index: the resolver fails here, offline, instead of asking PyPI
        pip_requirements=["--no-index", "envkit-test-no-such-distribution-xyz==9.9.9"],
    )
    out = envkit_cli("lock", str(tmp_path / "m"))
    assert out.returncode == 3
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and "envkit-test-no-such-distribution-xyz" in lines[0]
    assert lines[0].endswith("(--verbose for details)")
    verbose = envkit_cli("lock", str(tmp_path / "m"), "--verbose")
    assert len(verbose.stderr.strip().splitlines()) > 1


def test_one_line_keeps_the_first_line_and_caps_its_length():
    from envkit.cli import one_line

    first, rest = one_line("bad thing happened\n    caret line\n    ^")
    assert first == "bad thing happened" and "caret line" in rest
    first, rest = one_line("x" * 1000)
    assert len(first) <= 400 and first.endswith("\u2026") and rest == "x" * 1000


@pytest.mark.parametrize(
    ("edit", "shown"),
    [
        (lambda d: d["flavors"]["python_function"].update(python_model="../../x.pkl"), "x.pkl"),
        (lambda d: d["flavors"]["python_function"].update(code="/etc"), "/etc"),
        (
            lambda d: d["flavors"]["python_function"]["env"].update(virtualenv="../../etc/passwd"),
            "etc/passwd",
        ),
        (lambda d: d["saved_input_example_info"].update(artifact_path="../.."), "'../..'"),
    ],
    ids=["dotdot", "absolute", "env-file", "input-example"],
)
def test_info_refuses_paths_that_leave_the_model(tmp_path, edit, shown):
    import yaml

    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo(), input_example=["a"])
    mlmodel = tmp_path / "m" / "MLmodel"
    data = yaml.safe_load(mlmodel.read_text())
    edit(data)
    mlmodel.write_text(yaml.safe_dump(data))
    out = envkit_cli("info", str(tmp_path / "m"))
    assert out.returncode == 2, out.stdout
    assert out.stderr.startswith("error: the model refers to ") and shown in out.stderr
    assert len(out.stderr.splitlines()) == 1
