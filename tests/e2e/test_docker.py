"""Docker, for real: validation in a locked-down container, the serving image, layer reuse.

Marked ``docker``: skipped with the reason when no engine (or no base image) is here, and a
failure instead when ``ENVKIT_REQUIRE_DOCKER=1`` (CI). No registry is reachable, so the base
image is the one ``docker/build-base-image.sh`` builds (``ENVKIT_TEST_DOCKER_BASE_IMAGE``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest

BASE_IMAGE = os.environ.get("ENVKIT_TEST_DOCKER_BASE_IMAGE", "envkit-base:bookworm")
# One requirement set for every model here: one environment image, built once.
REQUIREMENTS = [
    f"scikit-learn=={version('scikit-learn')}",
    f"pandas=={version('pandas')}",
    f"numpy=={version('numpy')}",
    f"cloudpickle=={version('cloudpickle')}",
]


def run_envkit(
    *args: str, env: dict | None = None, timeout: float = 1200
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def docker_ready() -> None:
    from envkit.docker_build import engine_unavailable_reason, image_inspect

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

            import envkit.models
            import envkit.pyfunc


            class Probe(envkit.pyfunc.PythonModel):
                def predict(self, context, model_input, params=None):
                    try:
                        open("/opt/envkit/written-by-the-model", "w").close()
                        root = "writable"
                    except OSError:
                        root = "read-only"
                    names = sorted(name for _, name in socket.if_nameindex())
                    return [f"uid={os.getuid()}", f"root={root}", "net=" + ",".join(names)]


            envkit.models.set_model(Probe())
            """
        )
    )
    envkit.pyfunc.save_model(
        root / "probe", python_model=str(code), input_example=[1], pip_requirements=REQUIREMENTS
    )
    return {"iris": root / "iris", "probe": root / "probe", "root": root}


@pytest.fixture(scope="session")
def docker_env(docker_ready, shared_cache) -> dict[str, str]:
    return {
        **os.environ,
        "ENVKIT_HOME": str(shared_cache),
        "ENVKIT_DOCKER_BASE_IMAGE": BASE_IMAGE,
    }


@pytest.fixture(scope="session")
def build_lock(shared_cache):
    """Held while building: xdist workers build one at a time and reuse each other's layers."""
    from filelock import FileLock

    return FileLock(str(shared_cache / "docker-tests.lock"), timeout=1800)


def validate_json(model: Path, env: dict) -> dict:
    result = run_envkit(
        "validate", str(model), "--env-manager", "docker", "--format", "json", env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.mark.docker
def test_validate_runs_the_model_in_a_locked_down_container(
    docker_env, docker_models, build_lock, tmp_path
):
    with build_lock:
        report = validate_json(docker_models["probe"], docker_env)
    try:
        assert report["ok"] and report["backend"] == "docker"
        preview = report["output"]["preview"]
        # Non-root, read-only root file system, no network interface but loopback.
        assert "uid=10001" in preview and "root=read-only" in preview and "net=lo" in preview
        assert report["interpreter"]["running"].startswith("3.11")

        assert validate_json(docker_models["probe"], docker_env)["cache"]["hit"] is True

        # An empty environment cache still finds the image by its spec-key label.
        fresh = {**docker_env, "ENVKIT_HOME": str(tmp_path / "home")}
        data = validate_json(docker_models["probe"], fresh)
        assert data["cache"]["hit"] is False
        record = json.loads(Path(data["cache"]["path"] + "/image.json").read_text())
        assert record["reused"] is True and record["image"].startswith("sha256:")

        # envkit predict in the container: the predictions come back out of it.
        payload = tmp_path / "payload.json"
        payload.write_text(json.dumps({"inputs": [1]}))
        result = run_envkit(
            "predict",
            str(docker_models["probe"]),
            "--env-manager",
            "docker",
            "--input",
            str(payload),
            env=docker_env,
        )
        assert result.returncode == 0, result.stderr
        assert "uid=10001" in json.loads(result.stdout)["predictions"]
    finally:
        docker("rmi", f"envkit-env:{report['cache']['key']}")  # untags; shared layers stay


def _layers(ref: str) -> list[str]:
    return json.loads(docker("image", "inspect", ref).stdout)[0]["RootFS"]["Layers"]


@pytest.mark.docker
def test_build_docker_serves_and_a_model_only_change_rebuilds_only_the_model_layer(
    docker_env, docker_models, build_lock, iris
):
    from sklearn.linear_model import LogisticRegression
    from test_serve import Server, post_json

    import envkit.sklearn

    run_id = uuid.uuid4().hex[:8]
    tags = [f"envkit-test-iris:{run_id}-a", f"envkit-test-iris:{run_id}-b"]
    builds = []
    try:
        with build_lock:
            first = run_envkit(
                "build-docker",
                str(docker_models["iris"]),
                "-t",
                tags[0],
                "--format",
                "json",
                env=docker_env,
            )
        assert first.returncode == 0, first.stdout + first.stderr
        builds.append(json.loads(first.stdout))
        config = json.loads(docker("image", "inspect", tags[0]).stdout)[0]["Config"]
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
        second = run_envkit(
            "build-docker", str(other), "-t", tags[1], "--format", "json", env=docker_env
        )
        assert second.returncode == 0, second.stdout + second.stderr
        builds.append(json.loads(second.stdout))
        a, b = _layers(tags[0]), _layers(tags[1])
        assert len(a) == len(b) and a[:-1] == b[:-1] and a[-1] != b[-1]
        assert builds[1]["cached_steps"] >= 8, builds[1]

        # `envkit serve --env-manager docker`: the serving image, on the host's loopback.
        server = Server(docker_models["iris"], "--env-manager", "docker", env=docker_env)
        try:
            server.wait_ready(timeout=600)
            example = json.loads((docker_models["iris"] / "serving_input_example.json").read_text())
            status, payload = post_json(server.port, example)
            assert status == 200 and len(payload["predictions"]) == 3, payload
            status, payload = post_json(server.port, {"dataframe_split": {"data": [[1]]}})
            assert status == 400 and payload["error_code"] == "INVALID_PARAMETER_VALUE"
        finally:
            assert server.stop() == 0, server.output()
        left = docker("ps", "--all", "--quiet", "--filter", "name=envkit-serve-").stdout
        assert left.strip() == ""
    finally:
        for tag in tags:
            docker("rmi", tag)
        for line in docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
            if line.startswith("envkit-serve:"):
                docker("rmi", line)
    print("builds:", json.dumps(builds))


def test_no_reachable_engine_is_exit_3_with_the_reason(tmp_path, docker_models):
    """A real fault, no mock: the engine's socket does not exist."""
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock",
        "ENVKIT_HOME": str(tmp_path / "home"),
    }
    model = str(docker_models["iris"])
    for args in (
        ("validate", model, "--env-manager", "docker"),
        ("build-docker", model, "-t", "envkit-never-built"),
        ("serve", model, "--env-manager", "docker"),
    ):
        result = run_envkit(*args, env=env, timeout=120)
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        reasons = ("Docker engine is not reachable", "docker CLI is not installed")
        assert any(reason in result.stderr for reason in reasons), result.stderr
