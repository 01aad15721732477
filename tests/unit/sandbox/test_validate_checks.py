"""validate/predict before and around the sandbox: bad input fails on the host with exit 2
before anything is built, errors from inside keep their class, the report says what ran.

The runs here use the ``local`` backend (the runner in a subprocess of this interpreter): no
environment is built, so they are quick. A private ``ENVKIT_HOME`` per test shows that the
refused ones built nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import envkit
import envkit.models
import envkit.pyfunc
from envkit.errors import (
    EnvironmentBuildError,
    LoaderImportError,
    ModelFormatError,
    ServingInputError,
    UnsafePathError,
    UsageError,
)
from envkit.sandbox.report import render
from envkit.sandbox.validate import validate

MODEL_CODE = """
import os
import warnings

import envkit.models
import envkit.pyfunc


class Model(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        values = list(model_input.iloc[:, 0]) if hasattr(model_input, "iloc") else list(model_input)
        if "import" in values:
            import envkit_test_no_such_module  # noqa: F401
        if "warn" in values:  # the colours MLflow puts in its warnings
            warnings.warn("\\x1b[33mAdd type hints\\x1b[0m to the predict method")
        if "leak" in values:  # an error message quoting the secret the model read
            raise ValueError("bad key " + os.environ["SERVICE_API_KEY"])
        if "hang" in values:
            import time

            time.sleep(600)
        return [os.environ.get("ENVKIT_TEST_VALUE", "unset") for _ in values]


envkit.models.set_model(Model())
"""


def envkit_cli(*args: str, home: Path, env: dict[str, str] | None = None, stdin: str = ""):
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "ENVKIT_HOME": str(home)},
        timeout=300,
    )


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A models-from-code pyfunc: returns $ENVKIT_TEST_VALUE per row; 'import' imports a
    module no environment has, 'warn' warns in colour, 'leak' raises quoting
    $SERVICE_API_KEY, 'hang' hangs."""
    root = tmp_path_factory.mktemp("checks")
    code = root / "model_code.py"
    code.write_text(MODEL_CODE, encoding="utf-8")
    path = root / "model"
    envkit.pyfunc.save_model(path, python_model=str(code), input_example=["a", "b"])
    return path


@pytest.fixture
def model(saved_model, tmp_path) -> Path:
    """A private copy of the model, to break."""
    return Path(shutil.copytree(saved_model, tmp_path / "model"))


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "envkit-home"


def edit_mlmodel(model: Path, edit) -> None:
    mlmodel = model / "MLmodel"
    data = yaml.safe_load(mlmodel.read_text())
    edit(data)
    mlmodel.write_text(yaml.safe_dump(data))


def built_nothing(home: Path) -> bool:
    return not (home / "envs").exists() or not any((home / "envs").iterdir())


# --- B2: bad input fails on the host, before anything is built, with exit 2 -------------------


def _dotdot(model: Path) -> None:
    edit_mlmodel(model, lambda d: d["flavors"]["python_function"].update(data="../../etc"))


def _symlinked_file(model: Path) -> None:
    outside = model.parent / "outside.py"
    shutil.move(str(model / "model_code.py"), outside)
    (model / "model_code.py").symlink_to(outside)


def _symlinked_mlmodel(model: Path) -> None:
    outside = model.parent / "MLmodel.outside"
    shutil.move(str(model / "MLmodel"), outside)
    (model / "MLmodel").symlink_to(outside)


def _missing_file(model: Path) -> None:
    (model / "model_code.py").unlink()


def _bad_signature(model: Path) -> None:
    edit_mlmodel(model, lambda d: d["signature"].update(inputs="not json"))


def _missing_input_example(model: Path) -> None:
    (model / "input_example.json").unlink()


@pytest.mark.parametrize(
    "breakage, error, words",
    [
        (_dotdot, UnsafePathError, "resolves outside the model directory"),
        (_symlinked_file, UnsafePathError, "'model_code.py', which resolves outside"),
        (_symlinked_mlmodel, UnsafePathError, "'MLmodel', which resolves outside"),
        (_missing_file, ModelFormatError, "model_code_path is 'model_code.py', which is missing"),
        (_bad_signature, ModelFormatError, "the signature in MLmodel cannot be read"),
        (_missing_input_example, ModelFormatError, "input example is 'input_example.json'"),
    ],
    ids=["dotdot", "symlinked-file", "symlinked-mlmodel", "missing-file", "bad-signature",
         "missing-input-example"],
)  # fmt: skip
def test_a_broken_model_is_refused_on_the_host_before_building(model, home, breakage, error, words):
    breakage(model)
    with pytest.raises(error, match=words) as info:
        validate(model, cache_dir=home)
    assert info.value.exit_code == 2
    assert built_nothing(home)

    cli = envkit_cli("validate", str(model), home=home)
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert cli.stderr.startswith("error: ") and words in cli.stderr
    assert built_nothing(home)


@pytest.mark.parametrize("command", ["validate", "predict"])
def test_a_malformed_input_is_exit_2_before_building(model, home, tmp_path, command):
    bad = tmp_path / "bad.json"
    bad.write_text('{"inputs": ')
    cli = envkit_cli(command, str(model), "--input", str(bad), home=home)
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert cli.stderr.startswith(f"error: --input {bad}: the payload is not valid JSON")
    assert built_nothing(home)
    deep = tmp_path / "deep.json"
    deep.write_text('{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}")
    cli = envkit_cli(command, str(model), "--input", str(deep), home=home)
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert "nests arrays or objects too deeply" in cli.stderr
    assert len(cli.stderr.splitlines()) == 1
    assert built_nothing(home)
    wrong_key = tmp_path / "wrong.json"
    wrong_key.write_text('{"rows": [1]}')
    with pytest.raises(ServingInputError, match="exactly one of") as info:
        envkit.models.predict(model, input_path=wrong_key, cache_dir=home)
    assert info.value.exit_code == 2
    assert built_nothing(home)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--python", "banana"], "--python 'banana' is not a Python version"),
        (["--timeout", "-1"], "--timeout must be a positive number of seconds"),
        (["--timeout", "0"], "--timeout must be a positive number of seconds"),
        (["--base-image", "python:3.11-slim"], "--base-image cannot be used with the uv"),
        (["--env-manager", "local", "--python", "2.6"], "cannot be used with the local backend"),
    ],
    ids=["python", "negative-timeout", "zero-timeout", "base-image-without-docker", "local"],
)
def test_bad_options_are_usage_errors(model, home, args, words):
    cli = envkit_cli("validate", str(model), *args, home=home)
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert cli.stderr.startswith("error: ") and words in cli.stderr
    assert len(cli.stderr.splitlines()) == 1
    assert built_nothing(home)


def test_a_python_too_old_for_envkit_says_so(model, home):
    """Python 2.7/3.8, when this machine has one: not 'check the requirement names'."""
    from envkit.sandbox.interpreters import available_interpreters

    old = [i.minor for i in available_interpreters() if i.minor in ("2.7", "3.8")]
    if not old:
        pytest.skip("no Python 2.7 or 3.8 interpreter here")
    report = validate(model, python=old[0], cache_dir=home)
    assert report.status == "env_failed" and report.exit_code == 3
    message = report.error["message"]
    assert "cannot run envkit" in message and "--python 3.9 or newer" in message
    assert "requirement names" not in message
    assert isinstance(report.to_error(), EnvironmentBuildError)
    assert built_nothing(home)


# --- B2: errors raised inside the sandbox keep their class and exit code -----------------------


def test_a_loader_that_cannot_be_imported_keeps_its_class_and_exit_1(model, home, tmp_path):
    """A loader module missing from the environment is the model failing (README: exit 1)."""
    edit_mlmodel(
        model, lambda d: d["flavors"]["python_function"].update(loader_module="no_such_module_xyz")
    )
    report = validate(model, env_manager="local", cache_dir=home)
    assert report.status == "model_failed" and report.exit_code == 1
    assert report.error["class"] == "LoaderImportError"
    assert "no_such_module_xyz" in report.error["message"]
    error = report.to_error()
    assert isinstance(error, LoaderImportError) and error.exit_code == 1
    with pytest.raises(LoaderImportError):
        report.raise_for_error()
    junit = render(report, "junit")
    assert 'errors="0"' in junit and 'failures="1"' in junit

    cli = envkit_cli("validate", str(model), "--env-manager", "local", home=home)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert cli.stdout.startswith("FAILED: loading the model failed: LoaderImportError")


# --- E5, E6: hints that fit the backend, no terminal colours in reports ------------------------


def test_a_missing_module_under_the_local_backend_is_not_blamed_on_the_requirements(
    model, tmp_path
):
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"inputs": ["import"]}))
    report = validate(model, env_manager="local", input_path=payload)
    assert report.status == "model_failed" and report.exit_code == 1
    message = report.error["message"]
    assert "No module named 'envkit_test_no_such_module'" in message
    assert "install the missing package here" in message
    assert "holds only the model's recorded requirements" not in message


def test_colour_escapes_never_reach_a_report(model, tmp_path):
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"inputs": ["warn"]}))
    report = validate(model, env_manager="local", input_path=payload)
    assert report.ok, report.headline
    assert any("Add type hints to the predict method" in w for w in report.warnings)
    for fmt in ("text", "json", "junit"):
        assert "\x1b" not in render(report, fmt, verbose=True)
        assert "\\u001b" not in render(report, fmt, verbose=True)


# --- E8: validate and predict take the same options, under both names -------------------------


def test_validate_and_predict_take_the_same_options_under_both_names(model, tmp_path):
    out = tmp_path / "predictions.json"
    report = validate(
        model,
        env_manager="local",
        input_data=["x"],
        output_path=out,
        extra_envs={"ENVKIT_TEST_VALUE": "from-extra-envs"},
        pip_requirements_override=["pytest"],
    )
    assert report.ok, report.headline
    assert json.loads(out.read_text()) == {"predictions": ["from-extra-envs"]}
    assert "--override: added pytest" in report.spec_notes

    predictions = envkit.models.predict(
        model,
        input_data=["x", "y"],
        env_manager="local",
        extra_env={"ENVKIT_TEST_VALUE": "from-extra-env"},
        overrides=["pytest"],
    )
    assert predictions == ["from-extra-env", "from-extra-env"]
    assert envkit.models.predict(
        model, ["x"], env_manager="local", extra_envs={"ENVKIT_TEST_VALUE": "v"}
    ) == ["v"]

    with pytest.raises(UsageError, match="give extra_env or extra_envs, not both"):
        validate(model, env_manager="local", extra_env={"A": "1"}, extra_envs={"A": "2"})
    with pytest.raises(UsageError, match="give overrides or pip_requirements_override"):
        envkit.models.predict(
            model, ["x"], env_manager="local", overrides=["a"], pip_requirements_override=["b"]
        )


# --- B6: what a killed run leaves is removed by the next one -----------------------------------


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it, wherever their sessions are."""
    import signal

    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_killed_run_leaves_a_work_directory_the_next_run_removes(model, tmp_path):
    import time

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"inputs": ["hang"]}))
    env = {**os.environ, "TMPDIR": str(scratch)}
    argv = ["validate", str(model), "--env-manager", "local", "--input", str(payload)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "envkit", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while not list(scratch.glob("envkit-run-*/request.json")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        _kill_tree(proc.pid)  # envkit and the model's process (in a session of its own)
        proc.wait()
    left = list(scratch.glob("envkit-run-*"))
    assert len(left) == 1 and left[0].name.startswith(f"envkit-run-{proc.pid}-")

    again = subprocess.run(
        [sys.executable, "-m", "envkit", "validate", str(model), "--env-manager", "local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert list(scratch.iterdir()) == []


def test_stale_temporary_directories_are_recognised_by_their_process(tmp_path):
    from envkit.sandbox.tempdirs import remove_stale_tempdirs

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    dead = tmp_path / f"envkit-run-{gone.stdout.strip()}-abcd1234"
    alive = tmp_path / f"envkit-run-{os.getpid()}-abcd1234"
    other = tmp_path / "envkit-run-not-a-pid"
    for path in (dead, alive, other):
        path.mkdir()
    assert remove_stale_tempdirs(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and other.exists()

    if os.geteuid() == 0:
        # As root the docker backend chowns a run's directory to the container's user for
        # the run; a killed envkit never gives it back, and prune still removes it.
        from envkit.sandbox.tempdirs import CONTAINER_UID

        handed = tmp_path / f"envkit-run-{gone.stdout.strip()}-efgh5678"
        handed.mkdir()
        os.chown(handed, CONTAINER_UID, CONTAINER_UID)
        stranger = tmp_path / f"envkit-run-{gone.stdout.strip()}-ijkl9012"
        stranger.mkdir()
        os.chown(stranger, CONTAINER_UID + 1, CONTAINER_UID + 1)
        assert remove_stale_tempdirs(tmp_path) == [handed]


def test_the_text_report_says_an_override_once(model):
    report = validate(model, env_manager="local", overrides=["pytest"])
    text = render(report, "text")
    assert "--override: added pytest" in text
    assert "mismatches    none (with the --override above)" in text
    assert not any("DependencyMismatch" in w for w in report.warnings)


def test_a_secret_quoted_by_the_models_error_is_redacted_in_the_report(model, home):
    secret = "sk-value-that-must-not-reach-ci-logs-91c"
    report = validate(
        model,
        env_manager="local",
        input_data=["leak"],
        extra_env={"SERVICE_API_KEY": secret},
        cache_dir=home,
    )
    assert report.status == "model_failed" and report.exit_code == 1
    assert "bad key ***" in report.error["message"]
    for form in ("text", "json", "junit"):
        assert secret not in render(report, form)


def test_cuda_builds_are_local_cu_labels_and_nvidia_libraries():
    from envkit.sandbox.checks import cuda_builds

    lines = [
        "torch==2.3.0+cu121", "torch==2.3.0+cpu", "torchvision==0.18.0",
        "nvidia-cublas-cu12==12.1.3", "jax[cuda12]>=0.4",
        "--extra-index-url https://download.pytorch.org/whl/cu121",
    ]  # fmt: skip
    assert cuda_builds(lines) == ["torch==2.3.0+cu121", "nvidia-cublas-cu12==12.1.3"]


def test_the_gpu_probe_reads_device_nodes_and_the_drivers_list(tmp_path):
    from envkit.sandbox.checks import has_nvidia_gpu

    dev, proc = tmp_path / "dev", tmp_path / "proc"
    dev.mkdir()
    proc.mkdir()
    (dev / "nvidiactl").touch()  # the driver's control node alone is not a GPU
    assert not has_nvidia_gpu(dev, proc)
    (dev / "nvidia0").touch()
    assert has_nvidia_gpu(dev, proc)
    (dev / "nvidia0").unlink()
    (proc / "driver" / "nvidia" / "gpus" / "0000:01:00.0").mkdir(parents=True)
    assert has_nvidia_gpu(dev, proc)


def test_a_cuda_build_without_a_gpu_is_one_warning_line():
    from envkit.sandbox.checks import gpu_build_note

    assert gpu_build_note(["torch==2.3.0+cu121"], gpu=True) is None
    assert gpu_build_note(["torch==2.3.0+cpu"], gpu=False) is None
    note = gpu_build_note(["torch==2.3.0+cu121"], gpu=False)
    assert note is not None and "\n" not in note
    assert note.startswith("the model records a CUDA build (torch==2.3.0+cu121)")
