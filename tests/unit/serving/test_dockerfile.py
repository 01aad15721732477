"""The generated build context, without an engine: layers, base image, CA bundle, env vars."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from envkit.docker import default_base_image, generate_dockerfile, resolve_ca_bundle
from envkit.errors import UsageError


@pytest.fixture(scope="module")
def model(tmp_path_factory, iris_pipeline, iris) -> Path:
    import envkit.sklearn

    X, _ = iris
    path = tmp_path_factory.mktemp("m") / "iris"
    envkit.sklearn.save_model(
        iris_pipeline,
        path,
        input_example=X.head(2),
        pip_requirements=[f"scikit-learn=={version('scikit-learn')}", "pandas"],
    )
    (path / "environment_variables.txt").write_text("# header\nOPENAI_API_KEY\nMY_API_TOKEN\n")
    return path


def test_the_dockerfile_is_classic_builder_syntax_in_cache_friendly_layers(model, tmp_path):
    context = generate_dockerfile(model, tmp_path / "ctx", base_image="envkit-base:bookworm")
    text = context.dockerfile.read_text()
    assert "--mount" not in text and "<<" not in text and "# syntax" not in text
    assert text.count("FROM ") == 2 and "FROM envkit-base:bookworm AS env" in text
    order = [
        text.index("COPY envkit-build/model-env/"),
        text.index("COPY envkit-build/envkit/"),
        text.index("USER 10001:10001"),
        text.index("COPY model/ /opt/ml/model/"),
        text.index('ENTRYPOINT ["python", "-m", "envkit.serving", "/opt/ml/model"]'),
    ]
    assert order == sorted(order)
    model_env = (context.directory / "envkit-build/model-env/requirements.txt").read_text()
    assert "scikit-learn==" in model_env and "envkit" not in model_env
    envkit_req = (context.directory / "envkit-build/envkit/requirements.txt").read_text()
    assert re.fullmatch(
        r"envkit\[serve\] @ file:///opt/envkit/build/envkit/envkit-[^/]+\.whl\n", envkit_req
    )
    assert list((context.directory / "envkit-build/envkit").glob("envkit-*.whl"))
    assert (context.directory / "model" / "MLmodel").is_file()


def test_recorded_env_vars_are_documented_by_name_never_given_values(model, tmp_path):
    monkey_value = "sk-secret-value"
    context = generate_dockerfile(model, tmp_path / "ctx", ca_bundle="none")
    text = context.dockerfile.read_text()
    assert "#   ENV MY_API_TOKEN" in text and "#   ENV OPENAI_API_KEY" in text
    assert 'LABEL org.envkit.expected-env="MY_API_TOKEN,OPENAI_API_KEY"' in text
    assert not re.search(r"^ENV (OPENAI_API_KEY|MY_API_TOKEN)", text, re.MULTILINE)
    assert monkey_value not in text
    assert "ca-bundle" not in text and context.ca_bundle is None


def test_base_image_defaults_to_the_recorded_python(monkeypatch):
    monkeypatch.delenv("ENVKIT_DOCKER_BASE_IMAGE", raising=False)
    assert default_base_image("3.11.7") == "python:3.11-slim"
    monkeypatch.setenv("ENVKIT_DOCKER_BASE_IMAGE", "envkit-base:bookworm")
    assert default_base_image("3.11.7") == "envkit-base:bookworm"
    assert default_base_image("3.11.7", "other:1") == "other:1"
    with pytest.raises(UsageError):
        default_base_image("3.11", "bad image; rm -rf /")


def test_ca_bundle_auto_explicit_and_none(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    for name in ("ENVKIT_DOCKER_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_ca_bundle("auto") is None
    monkeypatch.setenv("PIP_CERT", str(bundle))
    assert resolve_ca_bundle("auto") == bundle
    assert resolve_ca_bundle("none") is None
    assert resolve_ca_bundle(str(bundle)) == bundle
    with pytest.raises(UsageError, match="no such file"):
        resolve_ca_bundle(str(tmp_path / "missing.pem"))


def test_the_ca_bundle_is_used_by_the_install_steps_only(model, tmp_path):
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    context = generate_dockerfile(model, tmp_path / "ctx", ca_bundle=str(bundle))
    text = context.dockerfile.read_text()
    assert (context.directory / "envkit-build/model-env/ca-bundle.crt").read_text() == (
        bundle.read_text()
    )
    assert text.count("export PIP_CERT=/opt/envkit/build/model-env/ca-bundle.crt") == 2
    assert not re.search(r"^ENV .*PIP_CERT", text, re.MULTILINE)


def test_cli_refuses_a_non_empty_output_directory(model, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "envkit",
            "generate-dockerfile",
            str(model),
            "-o",
            str(tmp_path / "taken"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "not an empty directory" in result.stderr


def _generate(model: Path, output: Path, env: dict[str, str] | None = None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "envkit", "generate-dockerfile", str(model), "-o", str(output)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("inside", ["docker", "docker/deeper", "."])
def test_an_output_directory_inside_the_model_is_refused_and_nothing_written(
    model, tmp_path, inside
):
    import shutil

    copy = Path(shutil.copytree(model, tmp_path / "model"))
    before = _tree(copy)
    result = _generate(copy, copy / inside)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: the output directory")
    assert "is inside the model" in result.stderr and len(result.stderr.splitlines()) == 1
    assert _tree(copy) == before


def test_a_failed_generation_leaves_nothing(model, tmp_path):
    import os
    import shutil

    copy = Path(shutil.copytree(model, tmp_path / "model"))
    os.mkfifo(copy / "a-pipe")  # cannot be copied into the context
    out = tmp_path / "out" / "ctx"
    result = _generate(copy, out)
    assert result.returncode == 2, result.stderr
    assert "cannot copy the model into the build context" in result.stderr
    assert "a-pipe" in result.stderr
    assert not out.exists() and list((tmp_path / "out").iterdir()) == []
    (copy / "a-pipe").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _generate(copy, empty).returncode == 0  # an empty directory is filled
    assert (empty / "Dockerfile").is_file() and (empty / "model" / "MLmodel").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_symlink_out_of_the_model_is_refused(model, tmp_path):
    import shutil

    copy = Path(shutil.copytree(model, tmp_path / "model"))
    (copy / "etc").symlink_to("/etc")
    result = _generate(copy, tmp_path / "ctx")
    assert result.returncode == 2 and "resolves outside the model directory" in result.stderr
    assert not (tmp_path / "ctx").exists()


def test_envkit_docker_ca_bundle_is_taken_as_the_option(model, tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CERT", str(bundle))
    monkeypatch.setenv("ENVKIT_DOCKER_CA_BUNDLE", "none")
    assert resolve_ca_bundle("auto") is None  # none disables, PIP_CERT notwithstanding
    assert resolve_ca_bundle(str(bundle)) == bundle  # the option wins
    monkeypatch.setenv("ENVKIT_DOCKER_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(UsageError, match="ENVKIT_DOCKER_CA_BUNDLE=.*missing.pem: no such file"):
        resolve_ca_bundle("auto")

    none = _generate(model, tmp_path / "c1", {"ENVKIT_DOCKER_CA_BUNDLE": "none"})
    assert none.returncode == 0, none.stderr
    assert "CA bundle" not in none.stdout
    assert not (tmp_path / "c1" / "envkit-build" / "model-env" / "ca-bundle.crt").exists()
    missing = _generate(model, tmp_path / "c2", {"ENVKIT_DOCKER_CA_BUNDLE": "/nonexistent.crt"})
    assert missing.returncode == 2
    assert missing.stderr == (
        "error: ENVKIT_DOCKER_CA_BUNDLE=/nonexistent.crt: no such file (give a CA bundle file, "
        "or none)\n"
    )
    assert not (tmp_path / "c2").exists()
