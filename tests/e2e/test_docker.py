"""Docker, for real: validation in a locked-down container, the serving image, layer reuse.

Marked ``docker``: skipped with the reason when no engine (or no base image) is here, and a
failure instead when ``ENVKIT_REQUIRE_DOCKER=1`` (CI). No registry is reachable, so the base
image is the one ``docker/build-base-image.sh`` builds (``ENVKIT_TEST_DOCKER_BASE_IMAGE``).
"""

from __future__ import annotations

import contextlib
import json
import os
import textwrap
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest
from test_validate import envkit_cli

BASE_IMAGE = os.environ.get("ENVKIT_TEST_DOCKER_BASE_IMAGE", "envkit-base:bookworm")
# Set for every envkit run here: no registry is reachable, the base image is local.
DOCKER_VARS = {"ENVKIT_DOCKER_BASE_IMAGE": BASE_IMAGE}
BUILD_TIMEOUT = 1200
# One requirement set for every model here: one environment image, built once.
REQUIREMENTS = [
    f"scikit-learn=={version('scikit-learn')}",
    f"pandas=={version('pandas')}",
    f"numpy=={version('numpy')}",
    f"cloudpickle=={version('cloudpickle')}",
]


@pytest.fixture(scope="session")
def docker_ready() -> None:
    from envkit.docker import engine_unavailable_reason, image_inspect

    def unavailable(reason: str) -> None:
        if os.environ.get("ENVKIT_REQUIRE_DOCKER") == "1":
            pytest.fail(f"ENVKIT_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)

    reason = engine_unavailable_reason()
    if reason is not None:
        unavailable(reason)
    if image_inspect(BASE_IMAGE) is None:
        unavailable(f"no base image {BASE_IMAGE}: build it with docker/build-base-image.sh")


@pytest.fixture(scope="session")
def engine(docker_ready):
    """The test's own client of the engine (the docker SDK), to look at what envkit made."""
    import docker

    client = docker.from_env(version="auto")
    yield client
    client.close()


def remove_image(engine, ref: str) -> None:
    """Untag ``ref``; its layers stay while another tag, image or container uses them (the
    other worker's build may be using them right now: ``force`` untags all the same)."""
    from docker.errors import NotFound

    with contextlib.suppress(NotFound):
        engine.images.remove(ref, force=True)


@pytest.fixture(scope="session")
def docker_models(tmp_path_factory, iris_pipeline, iris) -> dict[str, Path]:
    import envkit.pyfunc
    import envkit.sklearn

    root = tmp_path_factory.mktemp("docker-models")
    X, _ = iris
    envkit.sklearn.save_model(
        iris_pipeline, root / "iris", input_example=X.head(3), pip_requirements=REQUIREMENTS
    )
    code = root / "probe_code.py"
    code.write_text(
        textwrap.dedent(
            """
            import os
            import socket
            import time

            import envkit.models
            import envkit.pyfunc


            def can_write(directory):
                try:
                    open(os.path.join(directory, "written-by-the-model"), "w").close()
                    return "writable"
                except OSError:
                    return "read-only"


            class Probe(envkit.pyfunc.PythonModel):
                def predict(self, context, model_input, params=None):
                    values = getattr(model_input, "to_numpy", lambda: model_input)()
                    values = list(values.ravel() if hasattr(values, "ravel") else values)
                    if 99 in values:
                        time.sleep(600)  # a hang: the run's timeout ends it
                    if 77 in values:
                        hog = "x" * (3 * 1024**3)  # more memory than the container may use
                        return [len(hog)]
                    names = sorted(name for _, name in socket.if_nameindex())
                    if not os.path.isdir("/opt/envkit/venv"):  # saving: on the host, write nothing
                        return ["host"]
                    return [
                        f"uid={os.getuid()}",
                        f"root={can_write('/opt/envkit')}",
                        f"model={can_write(os.path.dirname(__file__))}",
                        f"cwd={can_write(os.getcwd())}",
                        "net=" + ",".join(names),
                    ]


            envkit.models.set_model(Probe())
            """
        )
    )
    envkit.pyfunc.save_model(
        root / "probe", python_model=str(code), input_example=[1], pip_requirements=REQUIREMENTS
    )
    return {"iris": root / "iris", "probe": root / "probe", "root": root}


@pytest.fixture(scope="session")
def build_lock(shared_cache):
    """Held while building: xdist workers build one at a time and reuse each other's layers."""
    from filelock import FileLock

    return FileLock(str(shared_cache / "docker-tests.lock"), timeout=1800)


def envkit_json(*args: str, home: Path, code: int = 0) -> dict:
    """``envkit ARGS --format json`` (which may build an image): its exit code and JSON."""
    result = envkit_cli(
        *args, "--format", "json", home=home, env=DOCKER_VARS, timeout=BUILD_TIMEOUT
    )
    assert result.returncode == code, result.stdout + result.stderr
    return json.loads(result.stdout)


def validate_json(model: Path, home: Path, *args: str, code: int = 0) -> dict:
    return envkit_json(
        "validate", str(model), "--env-manager", "docker", *args, home=home, code=code
    )


@pytest.mark.docker
def test_validate_runs_the_model_in_a_locked_down_container(
    engine, docker_models, build_lock, shared_cache, tmp_path
):
    with build_lock:
        report = validate_json(docker_models["probe"], shared_cache)
    try:
        assert report["ok"] and report["backend"] == "docker"
        preview = report["output"]["preview"]
        # Non-root, read-only root file system, no network interface but loopback.
        assert "uid=10001" in preview and "root=read-only" in preview and "net=lo" in preview
        # The model is mounted read-only, the runner's work directory read-write.
        assert "model=read-only" in preview and "cwd=writable" in preview
        # The report names the Python that ran, everywhere (the base image's, not the model's).
        interpreter = report["interpreter"]
        assert interpreter["running"].startswith("3.11")
        assert interpreter["version"] == interpreter["running"]
        same = interpreter["running"] == interpreter["recorded"]
        assert interpreter["exact"] is same
        text = envkit_cli(
            "validate", str(docker_models["probe"]), "--env-manager", "docker",
            "--base-image", BASE_IMAGE, home=shared_cache,
        ).stdout  # fmt: skip
        assert f"interpreter   Python {interpreter['running']}" in text
        assert ("matches the recorded" in text) is same
        if not same:
            assert f"Python {interpreter['running']} runs the model" in text

        assert validate_json(docker_models["probe"], shared_cache)["cache"]["hit"] is True

        # An empty environment cache still finds the image by its spec-key label.
        data = validate_json(docker_models["probe"], tmp_path / "home")
        assert data["cache"]["hit"] is False
        record = json.loads(Path(data["cache"]["path"] + "/image.json").read_text())
        assert record["reused"] is True and record["image"].startswith("sha256:")

        # envkit predict in the container, the base image given as an option: the predictions
        # come back out of it.
        payload = tmp_path / "payload.json"
        payload.write_text(json.dumps({"inputs": [1]}))
        result = envkit_cli(
            "predict",
            str(docker_models["probe"]),
            "--env-manager",
            "docker",
            "--base-image",
            BASE_IMAGE,
            "--input",
            str(payload),
            home=shared_cache,
        )
        assert result.returncode == 0, result.stderr
        assert "uid=10001" in json.loads(result.stdout)["predictions"]

        # A model that runs out of memory: the report says so, and what to raise.
        payload.write_text(json.dumps({"inputs": [77]}))
        oom = envkit_cli(
            "validate", str(docker_models["probe"]), "--env-manager", "docker", "--input",
            str(payload), "--format", "json", home=shared_cache,
            env={**DOCKER_VARS, "ENVKIT_DOCKER_MEMORY": "256m"},
        )  # fmt: skip
        assert oom.returncode == 1, oom.stdout + oom.stderr
        message = json.loads(oom.stdout)["error"]["message"]
        assert message.startswith("the model's container was killed (exit code 137), out of")
        assert "it may use 256m; raise the limit with ENVKIT_DOCKER_MEMORY" in message

        # A model that hangs is killed at the timeout, and its container is removed.
        payload.write_text(json.dumps({"inputs": [99]}))
        hung = validate_json(
            docker_models["probe"], shared_cache, "--input", str(payload), "--timeout", "8", code=1
        )
        assert hung["error"]["kind"] == "timeout", hung["error"]
        assert hung["timings"]["run"] < 60
        assert engine.containers.list(all=True, filters={"name": "envkit-run-"}) == []
    finally:
        remove_image(engine, f"envkit-env:{report['cache']['key']}")


def wait_for_ping(port: int, container, timeout: float = 120) -> None:
    """Until the server in ``container`` answers /ping on ``port``."""
    import time

    from test_serve import request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        assert container.status in ("created", "running"), container.logs().decode()
        try:
            if request(port, "GET", "/ping", content_type=None)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no answer on port {port}: {container.logs().decode()}")


def _layers(engine, ref: str) -> list[str]:
    return engine.api.inspect_image(ref)["RootFS"]["Layers"]


@pytest.mark.docker
def test_build_docker_serves_and_a_model_only_change_rebuilds_only_the_model_layer(
    engine, docker_models, build_lock, shared_cache, iris
):
    from sklearn.linear_model import LogisticRegression
    from test_serve import Server, free_port, post_json

    import envkit.sklearn

    run_id = uuid.uuid4().hex[:8]
    tags = [f"envkit-test-iris:{run_id}-a", f"envkit-test-iris:{run_id}-b"]
    builds = []
    try:
        with build_lock:
            builds.append(
                envkit_json(
                    "build-docker", str(docker_models["iris"]), "-t", tags[0], home=shared_cache
                )
            )
        config = engine.api.inspect_image(tags[0])["Config"]
        assert config["User"] == "10001:10001"
        assert config["Entrypoint"][:3] == ["python", "-m", "envkit.serving"]
        assert "8080/tcp" in config["ExposedPorts"]

        # The same requirements, another model: only the model's layer is new.
        X, y = iris
        other = docker_models["root"] / f"iris-{run_id}"
        envkit.sklearn.save_model(
            LogisticRegression(C=0.3, max_iter=300).fit(X, y),
            other,
            input_example=X.head(3),
            pip_requirements=REQUIREMENTS,
        )
        builds.append(envkit_json("build-docker", str(other), "-t", tags[1], home=shared_cache))
        a, b = _layers(engine, tags[0]), _layers(engine, tags[1])
        assert len(a) == len(b) and a[:-1] == b[:-1] and a[-1] != b[-1]
        assert builds[1]["cached_steps"] >= 8, builds[1]

        # `envkit serve --env-manager docker`: the serving image, on the host's loopback.
        server = Server(
            docker_models["iris"],
            "--env-manager",
            "docker",
            env={**os.environ, **DOCKER_VARS, "ENVKIT_HOME": str(shared_cache)},
        )
        try:
            server.wait_ready(timeout=600)
            example = json.loads((docker_models["iris"] / "serving_input_example.json").read_text())
            status, payload = post_json(server.port, example)
            assert status == 200 and len(payload["predictions"]) == 3, payload
            status, payload = post_json(server.port, {"dataframe_split": {"data": [[1]]}})
            assert status == 400 and payload["error_code"] == "INVALID_PARAMETER_VALUE"
        finally:
            assert server.stop() == 0, server.output()
        assert engine.containers.list(all=True, filters={"name": "envkit-serve-"}) == []

        # The image's own entrypoint takes ENVKIT_SERVE_MAX_BODY_BYTES (`docker run -e`).
        port = free_port()
        container = engine.containers.run(
            tags[0],
            ["--host", "127.0.0.1", "--port", str(port)],
            environment={"ENVKIT_SERVE_MAX_BODY_BYTES": "100"},
            network_mode="host",
            detach=True,
            name=f"envkit-test-limit-{run_id}",
        )
        try:
            wait_for_ping(port, container)
            status, payload = post_json(port, example)
            assert status == 413, payload
            assert "over this server's limit of 100" in payload["message"]
        finally:
            container.remove(force=True)
    finally:
        for tag in tags:
            remove_image(engine, tag)
        for image in engine.images.list(name="envkit-serve"):
            for tag in image.tags:
                remove_image(engine, tag)
    print("builds:", json.dumps(builds))


@pytest.mark.docker
def test_the_base_image_is_an_option_of_validate_and_its_error_names_it(
    engine, docker_models, tmp_path
):
    result = envkit_cli(
        "validate", str(docker_models["probe"]), "--env-manager", "docker", "--base-image",
        "envkit-test-no-such-base:1", home=tmp_path / "home", timeout=300,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: the base image envkit-test-no-such-base:1 cannot be had")
    assert "pass it with --base-image or ENVKIT_DOCKER_BASE_IMAGE" in first
    missing_bundle = envkit_cli(
        "validate", str(docker_models["probe"]), "--env-manager", "docker", "--ca-bundle",
        str(tmp_path / "missing.pem"), home=tmp_path / "home",
    )  # fmt: skip
    assert missing_bundle.returncode == 2
    assert "--ca-bundle" in missing_bundle.stderr and "no such file" in missing_bundle.stderr
    assert engine.images.list(name="envkit-test-no-such-base") == []


def test_no_reachable_engine_is_exit_3_with_the_reason(tmp_path, docker_models):
    """A real fault, no mock: the engine's socket does not exist."""
    socket = f"unix://{tmp_path}/no-such-docker.sock"
    model = str(docker_models["iris"])
    for args in (
        ("validate", model, "--env-manager", "docker"),
        ("build-docker", model, "-t", "envkit-never-built"),
        ("serve", model, "--env-manager", "docker"),
    ):
        result = envkit_cli(*args, home=tmp_path / "home", env={"DOCKER_HOST": socket}, timeout=120)
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        reason = f"the Docker engine is not reachable at {socket} (No such file or directory)"
        assert reason in result.stderr, result.stderr


def test_containers_a_killed_envkit_left_are_reaped(engine):
    """A validation or server container whose envkit died (SIGKILL: no cleanup ran) is
    removed by the next envkit that uses the engine; one whose envkit lives is left alone."""
    import subprocess
    import sys

    from envkit.docker import LABEL_OWNER, owner_labels, reap_orphaned_containers

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    mine = owner_labels()[LABEL_OWNER]
    prefix = mine.rsplit("/", 1)[0]
    orphan = engine.containers.create(
        BASE_IMAGE, ["sleep", "600"], labels={LABEL_OWNER: f"{prefix}/{gone.pid}"}
    )
    alive = engine.containers.create(BASE_IMAGE, ["sleep", "600"], labels={LABEL_OWNER: mine})
    other_machine = engine.containers.create(
        BASE_IMAGE, ["sleep", "600"], labels={LABEL_OWNER: f"elsewhere/boot/{gone.pid}"}
    )
    try:
        orphan.start()
        removed = reap_orphaned_containers(engine)
        assert orphan.name in removed
        names = {c.name for c in engine.containers.list(all=True)}
        assert orphan.name not in names
        assert alive.name in names and other_machine.name in names
    finally:
        for container in (orphan, alive, other_machine):
            with contextlib.suppress(Exception):
                container.remove(force=True)


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("ENVKIT_DOCKER_MEMORY", "abc", "ENVKIT_DOCKER_MEMORY='abc' is not a memory size"),
        ("ENVKIT_DOCKER_CPUS", "-2", "ENVKIT_DOCKER_CPUS='-2' is not a positive number of CPUs"),
    ],
)
def test_bad_container_limits_are_exit_2_before_building(
    tmp_path, docker_models, variable, value, words
):
    home = tmp_path / "home"
    env = {**DOCKER_VARS, variable: value}
    result = envkit_cli("validate", str(docker_models["iris"]), "--env-manager", "docker",
                        home=home, env=env, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and words in result.stderr
    assert not (home / "envs").exists() or not any((home / "envs").iterdir())
