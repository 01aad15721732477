"""Bad input reaches the right exit (issue 13, part 4): exit code, one stderr line, and never
the contents of a file the model should not have pointed at."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

import envkit.pyfunc
from envkit.errors import (
    EXIT_BAD_INPUT,
    EXIT_MODEL_FAILED,
    LoaderImportError,
    MalformedPayloadError,
    ModelFormatError,
    UnsafePathError,
)
from envkit.pyfunc import PythonModel

SECRET = "TOP-SECRET-LINE-do-not-echo"


class Echo(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    import cloudpickle

    path = tmp_path_factory.mktemp("saved") / "m"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # loadable without this module
    try:
        envkit.pyfunc.save_model(path, python_model=Echo(), input_example={"a": [1, 2]})
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    (path / "requirements.txt").write_text("cloudpickle\n")  # nothing the local backend lacks
    return path


@pytest.fixture
def model(saved, tmp_path) -> Path:
    """A fresh copy of the saved model, two directories below ``tmp_path``."""
    target = tmp_path / "a" / "m"
    shutil.copytree(saved, target)
    return target


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


def envkit_cli(*args: str, home: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "ENVKIT_HOME": str(home)},
        timeout=300,
    )


def assert_exit(cli, code: int, *, words: str = "", never: tuple[str, ...] = ()) -> None:
    """Exit ``code``, exactly one stderr line (holding ``words``), none of ``never`` shown."""
    assert cli.returncode == code, cli.stdout + cli.stderr
    lines = cli.stderr.splitlines()
    assert len(lines) == 1, cli.stderr
    assert lines[0].startswith("error: ") and words in lines[0], lines[0]
    assert "Traceback" not in cli.stderr
    for text in never:
        assert text not in cli.stdout + cli.stderr


def edit_mlmodel(model: Path, edit) -> None:
    data = yaml.safe_load((model / "MLmodel").read_text())
    edit(data)
    (model / "MLmodel").write_text(yaml.safe_dump(data))


def validate_local(model: Path, home: Path, *extra: str):
    return envkit_cli("validate", str(model), "--env-manager", "local", *extra, home=home)


# --- 1: -r/-c includes that leave the model directory --------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "-r ../../outside.txt",
        "-r ../outside.txt",
        "-c ../outside.txt",
        "--requirement=../outside.txt",
    ],
)
def test_an_include_leaving_the_model_is_refused(model, home, line):
    for outside in (model.parent / "outside.txt", model.parent.parent / "outside.txt"):
        outside.write_text(f"{SECRET}\n")
    (model / "requirements.txt").write_text(f"cloudpickle\n{line}\n")
    cli = validate_local(model, home)
    assert_exit(cli, EXIT_BAD_INPUT, words="outside the model directory", never=(SECRET,))


@pytest.mark.parametrize("option", ["-r", "-c"])
def test_an_absolute_include_is_refused_without_its_contents(model, home, option):
    (model / "requirements.txt").write_text(f"cloudpickle\n{option} /etc/passwd\n")
    cli = validate_local(model, home)
    assert_exit(cli, EXIT_BAD_INPUT, words="absolute path", never=("root:",))


def test_a_nested_include_and_a_symlinked_file_stay_inside(model, home):
    (model.parent / "outside.txt").write_text(f"{SECRET}\n")
    (model / "sub").mkdir()
    (model / "sub" / "more.txt").write_text("-r ../../outside.txt\n")
    (model / "requirements.txt").write_text("cloudpickle\n-r sub/more.txt\n")
    assert_exit(validate_local(model, home), EXIT_BAD_INPUT, never=(SECRET,))
    (model / "requirements.txt").unlink()
    (model / "requirements.txt").symlink_to(model.parent / "outside.txt")
    assert_exit(validate_local(model, home), EXIT_BAD_INPUT, never=(SECRET,))


def test_the_reader_refuses_an_escaping_include_in_process(model):
    from envkit.deps.recorded import read_recorded_environment

    (model / "requirements.txt").write_text("-r ../../outside.txt\n")
    with pytest.raises(UnsafePathError):
        read_recorded_environment(model)


# --- 2: a loader module missing from the environment is the model failing (exit 1) -------------


def test_a_missing_loader_module_is_exit_1_in_process(model):
    edit_mlmodel(model, lambda d: d["flavors"]["python_function"].update(loader_module="nope_xyz"))
    with pytest.raises(LoaderImportError) as excinfo:
        envkit.pyfunc.load_model(model, suppress_warnings=True)
    error = excinfo.value
    assert error.exit_code == EXIT_MODEL_FAILED and error.module == "nope_xyz"
    assert "is not installed in the model's environment: add it to the requirements" in str(error)


def test_a_missing_module_the_loader_imports_is_named(model, monkeypatch):
    code = model / "code"
    code.mkdir()
    (code / "my_loader_xyz.py").write_text("import missing_dep_xyz\n")
    edit_mlmodel(
        model,
        lambda d: d["flavors"]["python_function"].update(
            loader_module="my_loader_xyz", code="code"
        ),
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(LoaderImportError) as excinfo:
        envkit.pyfunc.load_model(model, suppress_warnings=True)
    assert excinfo.value.module == "missing_dep_xyz" and excinfo.value.exit_code == 1
    sys.modules.pop("my_loader_xyz", None)


def test_a_missing_loader_module_is_exit_1_through_validate(model, home):
    edit_mlmodel(
        model, lambda d: d["flavors"]["python_function"].update(loader_module="mlflow.paddle")
    )
    cli = validate_local(model, home)
    assert_exit(cli, EXIT_MODEL_FAILED, words="mlflow.paddle")


# --- 3: malformed models are exit 2 in every command ---------------------------------------------


def _deep_mlmodel(model: Path) -> None:
    with (model / "MLmodel").open("a") as handle:
        handle.write("deep: " + "[" * 100_000 + "]" * 100_000 + "\n")


def _symlink_loop(model: Path) -> None:
    (model / "loop_a").symlink_to("loop_b")
    (model / "loop_b").symlink_to("loop_a")


def _relative_loader(model: Path) -> None:
    edit_mlmodel(model, lambda d: d["flavors"]["python_function"].update(loader_module=".sklearn"))


def _deep_input_example(model: Path) -> None:
    (model / "input_example.json").write_text('{"a": ' + "[" * 900 + "]" * 900 + "}")


@pytest.mark.parametrize(
    "breakage", [_deep_mlmodel, _symlink_loop, _relative_loader, _deep_input_example]
)
def test_a_malformed_model_is_exit_2(model, home, breakage):
    breakage(model)
    payload = model.parent / "payload.json"
    payload.write_text(json.dumps({"inputs": {"a": [1]}}))
    commands = [("validate", "--env-manager", "local")]
    if breakage is not _deep_input_example:  # (the others do not read the input example)
        commands += [("predict", "--env-manager", "local", "--input", str(payload))]
        with pytest.raises(ModelFormatError):
            envkit.pyfunc.load_model(model, suppress_warnings=True)
    if breakage in (_deep_mlmodel, _symlink_loop):
        commands.append(("info",))
    for command, *options in commands:
        assert_exit(envkit_cli(command, str(model), *options, home=home), EXIT_BAD_INPUT)


# --- 4: a payload nested too deeply to convert is MALFORMED_REQUEST ----------------------------


def asgi_post(app, path: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` (JSON) to the ASGI ``app``: (status, response body), no HTTP client."""
    import anyio

    sent: list[dict] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize("depth", [900, 100_000])
def test_a_deeply_nested_payload_is_a_400(depth):
    pytest.importorskip("starlette")
    from envkit.models.serving_input import parse_serving_input
    from envkit.serving.app import create_app

    body = '{"inputs": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(MalformedPayloadError):
        parse_serving_input(body)
    status, answer = asgi_post(create_app(Echo()), "/invocations", body.encode())
    assert status == 400
    assert json.loads(answer)["error_code"] == "MALFORMED_REQUEST"


# --- 5: YAML read fast and bounded; MLmodel size capped ------------------------------------------


def test_load_yaml_reads_what_safe_load_reads_and_refuses_deep_nesting():
    from envkit._parsing import YAMLNestingError, load_json, load_yaml

    text = "a: [1, {b: 2.5}]\nc: '3.10'\nd: 3.10\ne: null\nf: !!binary aGk=\n"
    assert load_yaml(text) == yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError):
        load_yaml("a: !!python/object:os.system {}\n")
    for deep in ("a: " + "[" * 200 + "]" * 200, "- " * 200 + "x"):
        with pytest.raises(YAMLNestingError):
            load_yaml(deep)
    # A million levels: envkit's composer refuses it, or, first, libyaml's own scanner, which
    # has a depth limit of its own since the libyaml PyYAML 6.0.4's wheels carry (a
    # ScannerError). Either way a YAML error, never a RecursionError or a crash.
    with pytest.raises(yaml.YAMLError):
        load_yaml("[" * 1_000_000)
    with pytest.raises(ValueError):
        load_json("[" * 200 + "]" * 200)
    if yaml.__with_libyaml__:
        from envkit._parsing import _LOADER

        assert any(base.__module__.startswith("yaml._yaml") for base in _LOADER.__mro__)


def test_an_mlmodel_over_the_size_cap_is_refused(model, home):
    with (model / "MLmodel").open("a") as handle:
        handle.write(("# padding\n" * 1024) * 420)  # > 4 MiB
    cli = envkit_cli("info", str(model), home=home)
    assert_exit(cli, EXIT_BAD_INPUT, words="ENVKIT_MAX_MLMODEL_BYTES")
    ok = envkit_cli("info", str(model), home=home, env={"ENVKIT_MAX_MLMODEL_BYTES": "9000000"})
    assert ok.returncode == 0, ok.stderr
    with pytest.raises(ModelFormatError, match="ENVKIT_MAX_MLMODEL_BYTES"):
        envkit.pyfunc.load_model(model, suppress_warnings=True)


# --- 7: validate leaves the model directory as it was --------------------------------------------

CODE_MODEL = """\
import envkit.models
import envkit.pyfunc


class Model(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        import helper_mod_xyz

        return helper_mod_xyz.same(model_input)


envkit.models.set_model(Model())
"""


def tree_state(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its mtime (ns)."""
    state = {".": root.stat().st_mtime_ns}
    for path in sorted(root.rglob("*")):
        state[str(path.relative_to(root))] = path.lstat().st_mtime_ns
    return state


def save_code_model(root: Path) -> Path:
    (root / "helper_mod_xyz.py").write_text("def same(x):\n    return x\n")
    (root / "model_code.py").write_text(CODE_MODEL)
    path = root / "m"
    with warnings.catch_warnings():  # (the save-time check runs the example without code/)
        warnings.simplefilter("ignore")
        envkit.pyfunc.save_model(
            path,
            python_model=str(root / "model_code.py"),
            code_paths=[str(root / "helper_mod_xyz.py")],
            input_example=["a"],
        )
    return path


def test_validate_writes_nothing_into_the_model_directory(tmp_path, home):
    model = save_code_model(tmp_path)
    before = tree_state(model)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cli = subprocess.run(
        [sys.executable, "-m", "envkit", "validate", str(model), "--env-manager", "local"],
        capture_output=True,
        text=True,
        env={**env, "ENVKIT_HOME": str(home)},
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert tree_state(model) == before


# --- 8: messages that say what is wrong ----------------------------------------------------------


def test_input_that_is_a_directory_says_so(model, home):
    for command in ("validate", "predict"):
        cli = envkit_cli(
            command, str(model), "--env-manager", "local", "--input", str(model), home=home
        )
        assert_exit(cli, EXIT_BAD_INPUT, words="is a directory")


def test_a_model_file_that_is_a_directory_says_so(model, home):
    (model / "python_model.pkl").unlink()
    (model / "python_model.pkl").mkdir()
    with pytest.raises(ModelFormatError, match="is a directory, not a file"):
        envkit.pyfunc.load_model(model, suppress_warnings=True)
    assert_exit(validate_local(model, home), EXIT_BAD_INPUT, words="is a directory, not a file")


def test_an_unquoted_python_version_read_as_a_float_says_to_quote_it(model, home):
    text = (model / "python_env.yaml").read_text()
    (model / "python_env.yaml").write_text(
        "\n".join(
            "python: 3.10" if line.startswith("python:") else line for line in text.split("\n")
        )
    )
    for command in (("validate", "--env-manager", "local"), ("deps",)):
        cli = envkit_cli(command[0], str(model), *command[1:], home=home)
        assert_exit(
            cli, EXIT_BAD_INPUT, words='read as the float 3.1; quote the version: python: "3.10"'
        )


# --- 6: slow and vanishing clients: a 408 or one log line each, never a traceback --------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(model, tmp_path):
    """``python -m envkit.serving`` on 127.0.0.1 with a 1 s body timeout: (port, its log)."""
    pytest.importorskip("uvicorn")
    import socket
    import time

    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as handle:
        argv = [sys.executable, "-m", "envkit.serving", str(model), "--port", str(port)]
        process = subprocess.Popen(
            [*argv, "--body-timeout", "1"],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield port, log
    finally:
        process.terminate()
        process.wait(timeout=30)


def _connect(port: int):
    import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _read_all(sock) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


HEAD = (
    b"POST /invocations HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    b"content-length: 100\r\n\r\n"
)


def test_clients_that_disconnect_mid_body_are_one_log_line_each(server):
    import time

    port, log = server
    clients = 20
    for _ in range(clients):
        sock = _connect(port)
        sock.sendall(HEAD + b'{"inputs": [')
        time.sleep(0.05)
        sock.close()
    time.sleep(1.5)
    text = log.read_text()
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if "disconnected before sending" in line]
    assert len(lines) == clients, text


def test_a_slow_body_gets_a_408(server):
    port, log = server
    sock = _connect(port)
    sock.sendall(HEAD + b'{"inputs": [')
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 1 seconds" in answer
    text = log.read_text()
    assert "Traceback" not in text
    assert len([line for line in text.splitlines() if "no complete request body" in line]) == 1


def test_slow_headers_get_a_408(server):
    port, log = server
    sock = _connect(port)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nhost: 127.0.0.1\r\n")
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    text = log.read_text()
    assert "Traceback" not in text
    assert len([line for line in text.splitlines() if "no complete request headers" in line]) == 1
    ok = _connect(port)  # the server still serves
    ok.sendall(
        b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b'content-length: 15\r\nconnection: close\r\n\r\n{"inputs": [1]}'
    )
    assert _read_all(ok).startswith(b"HTTP/1.1 200")
    ok.close()
