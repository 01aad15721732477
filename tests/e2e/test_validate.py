"""``envkit validate`` / ``envkit predict`` end to end: real environments, real installs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def envkit_cli(
    *args: str, home: Path, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m envkit ARGS`` with ``ENVKIT_HOME=home`` and the variables in ``env``
    set; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "ENVKIT_HOME": str(home)},
        timeout=timeout,
    )


def json_report(proc: subprocess.CompletedProcess) -> dict:
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON report:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")


def _env_dirs(home: Path) -> list[Path]:
    envs = home / "envs"
    return sorted(p for p in envs.iterdir() if p.is_dir()) if envs.is_dir() else []


def _records(home: Path) -> list[Path]:
    envs = home / "envs"
    return sorted(envs.glob("*.json")) if envs.is_dir() else []


def test_uv_validates_the_iris_model_and_the_second_run_is_a_cache_hit(
    cache_root, tmp_path, iris, iris_pipeline, local_index
):
    import envkit.sklearn

    # The iris pipeline, plus a distribution whose releases the test owns (the ektest wheels,
    # from a local --find-links directory), so that the override below is about a graph that
    # no release on PyPI can change.
    X, _ = iris
    iris_model = tmp_path / "iris"
    envkit.sklearn.save_model(
        iris_pipeline,
        iris_model,
        input_example=X.head(3),
        extra_pip_requirements=[f"--find-links {local_index.directory}", "ektest-leaf==1.0.0"],
    )
    first = envkit_cli("validate", str(iris_model), "--format", "json", home=cache_root)
    assert first.returncode == 0, first.stderr
    report = json_report(first)
    assert report["ok"] and report["backend"] == "uv"
    assert report["cache"]["hit"] is False
    assert report["cache"]["reason"].startswith("new spec")
    assert report["loader"] == "envkit.pyfunc.load_model"
    assert report["input"]["source"] == "input_example"
    assert report["output"]["shape"] == [3]
    assert report["timings"]["install"] > 0
    assert report["interpreter"]["exact"] is True
    assert any(r.startswith("scikit-learn==") for r in report["spec"]["requirements"])
    # The environment holds what the model's files install and envkit's runtime: no tooling.
    assert report["unrequested"] == []
    [site] = Path(report["cache"]["path"]).glob("lib/python*/site-packages")
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    tooling = {"uv", "virtualenv", "distlib", "rich", "pygments", "markdown_it_py", "mdurl"}
    tooling |= {"platformdirs", "python_discovery", "filelock"}
    assert installed & tooling == set(), installed & tooling
    assert not (site.parent.parent.parent / "bin" / "uv").exists()

    junit = tmp_path / "report.xml"
    second = envkit_cli(
        "validate", str(iris_model), "--format", "junit", "--output", str(junit), home=cache_root
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("OK:")
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None and case.find("failure") is None and case.find("error") is None
    assert "cache hit" in case.findtext("system-out", "")

    # A third run predicts on a CSV file; still no rebuild.
    csv = tmp_path / "rows.csv"
    iris[0].tail(4).to_csv(csv, index=False)
    third = envkit_cli(
        "validate", str(iris_model), "--input", str(csv), "--format", "json", home=cache_root
    )
    assert third.returncode == 0, third.stderr
    report3 = json_report(third)
    assert report3["cache"]["hit"] is True and report3["cache"]["reason"] == "cached"
    assert report3["timings"]["install"] == 0
    assert report3["cache"]["path"] == report["cache"]["path"]
    assert report3["output"]["shape"] == [4]
    assert len(_env_dirs(cache_root)) == 1 and len(_records(cache_root)) == 1

    # A changed spec is a miss that says what changed.
    fourth = envkit_cli(
        "validate",
        str(iris_model),
        "--override",
        "ektest-leaf==2.0.0",
        "--format",
        "json",
        home=cache_root,
    )
    assert fourth.returncode == 0, fourth.stderr
    report4 = json_report(fourth)
    assert report4["cache"]["hit"] is False
    assert "requirements changed: " in report4["cache"]["reason"]
    assert "removed ektest-leaf==1.0.0; added ektest-leaf==2.0.0" in report4["cache"]["reason"]
    # The override is intended: reported once, in the requirements, not as a mismatch as well.
    [note] = report4["spec_notes"]
    assert note == "--override: replaced ektest-leaf==1.0.0 with ektest-leaf==2.0.0"
    assert report4["mismatches"] == []
    assert not any("DependencyMismatch" in w or "ektest" in w for w in report4["warnings"])


def test_virtualenv_backend_validates_a_model(double_model, cache_root):
    proc = envkit_cli(
        "validate",
        str(double_model),
        "--env-manager",
        "virtualenv",
        "--format",
        "json",
        home=cache_root,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json_report(proc)
    assert report["backend"] == "virtualenv"
    assert "pip" in report["tools"] and "virtualenv" in report["tools"]
    assert report["output"]["preview"] == "[2, 4, 6]"


@pytest.mark.mlflow
def test_an_mlflow_written_model_validates_with_envkits_loader_or_mlflows(
    mlflow_iris_model, shared_cache
):
    # auto: envkit's loader for mlflow.sklearn (mlflow installed as recorded, not imported)
    proc = envkit_cli("validate", str(mlflow_iris_model), "--format", "json", home=shared_cache)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json_report(proc)
    assert report["loader"] == "envkit.pyfunc.load_model"
    assert any(r.startswith("mlflow==") for r in report["spec"]["requirements"])
    assert report["output"]["shape"] == [3]
    proc = envkit_cli("validate", str(mlflow_iris_model), "--loader", "mlflow", home=shared_cache)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert re.search(r"loader +mlflow.pyfunc.load_model", proc.stdout)


DOC_MLMODEL = """time_created: 2018-05-25T17:28:53.35
flavors:
  sklearn:
    sklearn_version: {sklearn}
    pickled_model: model.pkl
  python_function:
    loader_module: mlflow.sklearn
"""


@pytest.mark.mlflow
@pytest.mark.timeout(900)
def test_the_documentations_abbreviated_mlmodel_validates_with_envkits_loader(
    tmp_path, shared_cache, mlflow_python
):
    """MLflow's own loader fails on it (KeyError 'model_path'); envkit's reads it, with the
    model's pinned mlflow installed; the report says which loader ran, also on failure."""
    import pickle
    from importlib.metadata import version

    from sklearn.linear_model import LogisticRegression

    mlflow_version = subprocess.run(
        [str(mlflow_python), "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    model = tmp_path / "doc"
    model.mkdir()
    fitted = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    (model / "model.pkl").write_bytes(pickle.dumps(fitted))
    (model / "MLmodel").write_text(DOC_MLMODEL.format(sklearn=version("scikit-learn")))
    (model / "requirements.txt").write_text(
        f"mlflow=={mlflow_version}\nscikit-learn=={version('scikit-learn')}\n"
    )
    payload = tmp_path / "input.json"
    payload.write_text('{"inputs": [[0.5], [2.5]]}')
    args = ["validate", str(model), "--input", str(payload), "--trust-model", "--format", "json"]
    proc = envkit_cli(*args, home=shared_cache)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json_report(proc)
    assert report["loader"] == "envkit.pyfunc.load_model"
    assert report["output"]["preview"].replace(" ", "") == "array([0,1])"
    assert "(none recorded) + requirements.txt" in report["spec"]["source"]
    assert report["interpreter"]["recorded"] is None  # never "matches the recorded"
    assert "records no Python version" in report["interpreter"]["assumed"]
    proc = envkit_cli(*args, "--loader", "mlflow", home=shared_cache)
    assert proc.returncode == 1
    report = json_report(proc)
    assert report["loader"] == "mlflow.pyfunc.load_model"
    assert "KeyError: 'model_path'" in report["error"]["message"]


def test_python_option_validates_against_another_version(double_model, shared_cache):
    from envkit.sandbox.interpreters import available_interpreters

    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    others = [i.minor for i in available_interpreters() if i.minor not in (mine, "3.13")]
    others = [m for m in others if (3, 11) <= tuple(int(x) for x in m.split(".")) < (3, 14)]
    if not others:
        pytest.skip(f"no Python 3.11-3.12 interpreter besides {mine} is installed here")
    other = others[-1]
    proc = envkit_cli(
        "validate", str(double_model), "--python", other, "--format", "json", home=shared_cache
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json_report(proc)
    assert report["interpreter"]["version"].startswith(other + ".")
    assert report["interpreter"]["running"].startswith(other + ".")
    assert report["spec"]["python"].startswith(other + ".")
    assert report["mismatches"][0]["requirement"] == f"python=={report['interpreter']['recorded']}"


def test_a_requirement_that_cannot_be_installed_exits_3_and_caches_nothing(
    double_model, cache_root
):
    proc = envkit_cli(
        "validate",
        str(double_model),
        "--override",
        "envkit-test-no-such-distribution==1.0",
        "--format",
        "json",
        home=cache_root,
    )
    assert proc.returncode == 3, proc.stderr + proc.stdout
    first_line = proc.stderr.splitlines()[0]
    assert first_line.startswith("error: installing the model's requirements with uv failed")
    assert "--override" in first_line
    report = json_report(proc)
    assert report["status"] == "env_failed"
    assert _records(cache_root) == [] and _env_dirs(cache_root) == []


def test_a_model_whose_predict_raises_exits_1_with_its_message(
    raising_model, payload, shared_cache
):
    proc = envkit_cli("validate", str(raising_model), "--input", str(payload), home=shared_cache)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAILED: predict raised ValueError: the model is broken")
    assert proc.stderr.startswith("error: predict raised ValueError: the model is broken")


def test_a_model_that_hangs_times_out_and_exits_1(hanging_model, payload, shared_cache):
    start = time.perf_counter()
    proc = envkit_cli(
        "validate",
        str(hanging_model),
        "--input",
        str(payload),
        "--timeout",
        "8",
        home=shared_cache,
    )
    assert proc.returncode == 1, proc.stderr
    assert "timed out after 8s during predict" in proc.stderr.splitlines()[0]
    assert time.perf_counter() - start < 120


def test_a_missing_requirement_fails_validation(undeclared_import_model, shared_cache):
    """The model imports scikit-learn, installed here but not in its requirements."""
    proc = envkit_cli("validate", str(undeclared_import_model), home=shared_cache)
    assert proc.returncode == 1
    assert "No module named 'sklearn'" in proc.stderr.splitlines()[0]
    assert "add the missing package" in proc.stderr.splitlines()[0]
    # The local backend sees this interpreter's packages: the same model passes there.
    local = envkit_cli(
        "validate", str(undeclared_import_model), "--env-manager", "local", home=shared_cache
    )
    assert local.returncode == 0, local.stderr
    assert "NOT isolated" in local.stdout


def test_predict_stream_is_called_for_streamable_models(streaming_model, shared_cache):
    proc = envkit_cli("validate", str(streaming_model), "--format", "json", home=shared_cache)
    assert proc.returncode == 0, proc.stderr
    report = json_report(proc)
    assert report["stream"]["chunks"] > 0
    assert "stream" in report["timings"]


def test_predict_cli_and_python_api(double_model, shared_cache, tmp_path, monkeypatch):
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"inputs": [4, 5]}))
    proc = envkit_cli("predict", str(double_model), "--input", str(payload), home=shared_cache)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"predictions": [8, 10]}
    piped = subprocess.run(
        [sys.executable, "-m", "envkit", "predict", str(double_model), "--input", "-"],
        input='{"inputs": [7]}',
        capture_output=True,
        text=True,
        env=dict(os.environ, ENVKIT_HOME=str(shared_cache)),
        timeout=600,
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == {"predictions": [14]}

    import envkit.models

    out = tmp_path / "predictions.json"
    predictions = envkit.models.predict(
        str(double_model), input_data=[1, 2], output_path=out, cache_dir=shared_cache
    )
    assert predictions == [2, 4]
    assert json.loads(out.read_text()) == {"predictions": [2, 4]}


def test_python_api_returns_a_report(double_model, shared_cache):
    import envkit

    report = envkit.validate(double_model, cache_dir=shared_cache)
    assert isinstance(report, envkit.ValidationReport)
    assert report.ok and report.exit_code == 0
    assert report.output is not None and report.output["preview"] == "[2, 4, 6]"


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it, wherever their sessions are."""

    def children(parent: int) -> list[int]:
        found = []
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
        return found

    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue += children(current)
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)

    def running(member: int) -> bool:  # a zombie has stopped writing too
        try:
            return Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 30
    while any(running(m) for m in tree if m != pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_sigkill_during_a_build_leaves_nothing_trusted(double_model, cache_root, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, ENVKIT_HOME=str(cache_root), TMPDIR=str(scratch))
    proc = subprocess.Popen(
        [sys.executable, "-m", "envkit", "validate", str(double_model)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:  # killed while installing: the requirement files are staged
        while not list((cache_root / "envs").glob("*/.envkit-install/requirements.txt")):
            assert proc.poll() is None, "the build finished before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        # The job is killed: envkit and the installer it runs (in a session of its own).
        _kill_tree(proc.pid)
        proc.wait()
    assert _records(cache_root) == []
    assert list(scratch.iterdir()) == []  # no temporary directory left behind either
    interrupted = _env_dirs(cache_root)
    assert len(interrupted) == 1
    assert (interrupted[0] / ".envkit-install" / "requirements.txt").is_file()

    again = envkit_cli("validate", str(double_model), "--format", "json", home=cache_root)
    assert again.returncode == 0, again.stderr
    report = json_report(again)
    assert report["cache"]["hit"] is False
    assert Path(report["cache"]["path"]) != interrupted[0]
    assert _env_dirs(cache_root) == [Path(report["cache"]["path"])]  # the leftover is gone


def test_concurrent_validations_of_one_spec_build_once(double_model, cache_root):
    env = dict(os.environ, ENVKIT_HOME=str(cache_root))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "envkit", "validate", str(double_model), "--format", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    reports = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, stderr
        reports.append(json.loads(stdout))
    built = [r for r in reports if not r["cache"]["hit"]]
    assert len(built) == 1, [r["cache"] for r in reports]
    assert {r["cache"]["path"] for r in reports} == {built[0]["cache"]["path"]}
    assert len(_env_dirs(cache_root)) == 1 and len(_records(cache_root)) == 1


def test_env_list_and_prune(double_model, cache_root, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    private = {"TMPDIR": str(scratch)}
    assert envkit_cli("validate", str(double_model), home=cache_root).returncode == 0
    listed = envkit_cli("env", "list", "--format", "json", home=cache_root)
    environments = json.loads(listed.stdout)["environments"]
    assert len(environments) == 1 and environments[0]["backend"] == "uv"
    text = envkit_cli("env", "list", home=cache_root).stdout
    assert "numpy==" in text and "1 environment(s)" in text
    kept = envkit_cli("env", "prune", "--older-than", "1", home=cache_root, env=private)
    assert kept.returncode == 0 and "0 item(s) removed" in kept.stdout
    # What a killed run left in the temporary directory goes too.
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    (scratch / f"envkit-run-{ended.stdout.strip()}-abcdefgh").mkdir()
    pruned = envkit_cli("env", "prune", "--older-than", "0", home=cache_root, env=private)
    assert pruned.returncode == 0 and "2 item(s) removed" in pruned.stdout
    assert "(left by a process that no longer runs)" in pruned.stdout
    assert _env_dirs(cache_root) == [] and _records(cache_root) == []
    assert list(scratch.iterdir()) == []


def test_usage_errors_exit_2_and_unavailable_backends_exit_3(double_model, cache_root, tmp_path):
    missing = envkit_cli("validate", str(tmp_path / "nope"), home=cache_root)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no model at")
    unknown = envkit_cli("validate", str(double_model), "--env-manager", "nope", home=cache_root)
    assert unknown.returncode == 2 and "unknown environment manager 'nope'" in unknown.stderr
    from envkit.sandbox.backends.conda import find_conda

    if find_conda() is None:
        conda = envkit_cli("validate", str(double_model), "--env-manager", "conda", home=cache_root)
        assert conda.returncode == 3
        assert conda.stderr.startswith("error: the conda environment manager cannot run here")
        assert "no conda, mamba or micromamba" in conda.stderr


def test_a_pickled_model_whose_library_is_missing_is_a_model_failure(
    iris_model, shared_cache, tmp_path
):
    """scikit-learn dropped from an sklearn model's requirements: unpickling fails in the
    rebuilt environment. That is the model failing (exit 1, what to add), not bad input (2)."""
    import shutil

    model = tmp_path / "iris-without-sklearn"
    shutil.copytree(iris_model, model)
    requirements = model / "requirements.txt"
    kept = [
        line
        for line in requirements.read_text().splitlines()
        if not line.startswith(("scikit-learn", "scipy", "joblib", "threadpoolctl"))
    ]
    requirements.write_text("\n".join(kept))
    proc = envkit_cli("validate", str(model), "--format", "json", home=shared_cache)
    assert proc.returncode == 1, proc.stderr
    report = json_report(proc)
    assert report["status"] == "model_failed"
    message = report["error"]["message"]
    assert "needs the module 'sklearn'" in message
    assert "add the missing package to them (or try --override PACKAGE)" in message


def test_a_streaming_model_with_a_multi_row_example_streams_its_first_row(tmp_path, shared_cache):
    """predict passes on the 2-row example; predict_stream takes one input (MLflow's
    contract), so validation streams the first row and says so, instead of failing."""
    import pandas as pd

    import envkit.pyfunc

    code = tmp_path / "echo.py"
    code.write_text(
        "import envkit.models, envkit.pyfunc\n"
        "class Echo(envkit.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return list(model_input['a'])\n"
        "    def predict_stream(self, context, model_input, params=None):\n"
        "        yield from str(model_input)\n"
        "envkit.models.set_model(Echo())\n"
    )
    envkit.pyfunc.save_model(
        tmp_path / "m", python_model=str(code), input_example=pd.DataFrame({"a": ["x", "y"]})
    )
    proc = envkit_cli("validate", str(tmp_path / "m"), "--format", "json", home=shared_cache)
    assert proc.returncode == 0, proc.stderr
    report = json_report(proc)
    assert report["stream"]["note"] == "streamed the first of 2 rows"
    assert report["stream"]["chunks"] > 0
    text = envkit_cli("validate", str(tmp_path / "m"), home=shared_cache)
    assert "(streamed the first of 2 rows)" in text.stdout


@pytest.mark.parametrize("env_manager", ["uv", "virtualenv"])
def test_a_locked_model_installs_with_its_hashes_checked(
    double_model, shared_cache, tmp_path, env_manager
):
    """envkit lock, then validate: the lock's pins install with --require-hashes (envkit's
    wheel after them); a lock whose hash no longer matches what the index serves fails the
    build (exit 3) instead of installing it."""
    import re
    import shutil

    model = tmp_path / "locked"
    shutil.copytree(double_model, model)
    locked = envkit_cli("lock", str(model), "--tool", "uv", home=shared_cache)
    assert locked.returncode == 0, locked.stderr
    proc = envkit_cli(
        "validate", str(model), "--env-manager", env_manager, "--format", "json",
        home=shared_cache,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json_report(proc)
    assert report["spec"]["source"].endswith("requirements.lock")
    assert any(re.fullmatch(r"requirements\.lock: \d+ pins, hashes checked", n)
               for n in report["spec_notes"]), report["spec_notes"]  # fmt: skip

    lock = model / "requirements.lock"
    # numpy's every allowed hash replaced: what the index serves no longer matches the lock
    lines, in_numpy = [], False
    for line in lock.read_text().splitlines():
        if line.startswith("numpy=="):
            in_numpy = True
        elif line and not line[0].isspace():
            in_numpy = False
        if in_numpy:
            line = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, line)
        lines.append(line)
    lock.write_text("\n".join(lines) + "\n")
    tampered = envkit_cli("validate", str(model), "--env-manager", env_manager, home=shared_cache)
    assert tampered.returncode == 3, tampered.stdout + tampered.stderr
    first = tampered.stderr.splitlines()[0]
    assert "requirements.lock (hashes checked)" in first, first
    assert "does not match its hash in requirements.lock" in first, first
    assert "envkit lock MODEL" in first, first
