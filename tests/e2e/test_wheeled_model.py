"""Wheeled models (``envkit wheel``, ``envkit.models.add_wheels``): every requirement as a wheel
inside a copy of the model, in MLflow's wheeled-model layout, installed with no index at all.

The model needs ``ektest-leaf`` (a local wheel, ``local_index``); its other requirements
(pandas, and envkit's own dependencies) are downloaded once from the configured index while
wheeling. Then the index is pointed at a closed local port: validate and serve still work.
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
from test_serve import Server, free_port, post_json

pytestmark = pytest.mark.timeout(900)


def envkit_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args], capture_output=True, text=True, env=env,
        timeout=900,
    )  # fmt: skip


def no_index(home: Path) -> dict[str, str]:
    """This environment with every index at a closed local port (nothing listens there)."""
    closed = f"http://127.0.0.1:{free_port()}/simple"
    env = {**os.environ, "ENVKIT_HOME": str(home)}
    for name in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "PIP_INDEX_URL"):
        env[name] = closed
    for name in ("UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL", "UV_FIND_LINKS", "PIP_FIND_LINKS"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def leaf_model(tmp_path_factory, local_index) -> Path:
    import envkit.pyfunc

    class Leaf(envkit.pyfunc.PythonModel):  # pickled by value (a local class)
        def predict(self, context, model_input, params=None):
            import ekleaf

            return [ekleaf.VERSION for _ in range(len(model_input))]

    path = tmp_path_factory.mktemp("wheeled") / "leaf"
    with pytest.warns(UserWarning, match="ekleaf"):  # not installed here: capture says so
        envkit.pyfunc.save_model(
            path,
            python_model=Leaf(),
            input_example=["a", "b"],
            pip_requirements=[
                f"--find-links {local_index.directory.resolve()}",
                "ektest-leaf==1.0.0",
                "pandas",
            ],
        )
    return path


@pytest.fixture(scope="module")
def wheeled(leaf_model, tmp_path_factory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("home")
    out = leaf_model.with_name("leaf_wheels")
    result = envkit_cli(
        "wheel", str(leaf_model), "--format", "json", env={**os.environ, "ENVKIT_HOME": str(home)}
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert Path(data["path"]) == out
    return out, data


def test_wheel_writes_mlflows_wheeled_model_layout(leaf_model, wheeled):
    out, data = wheeled
    names = sorted(p.name for p in (out / "wheels").iterdir())
    assert all(n.endswith(".whl") for n in names)
    assert "ektest_leaf-1.0.0-py3-none-any.whl" in names
    assert any(n.startswith("envkit-") for n in names)  # envkit is on no index
    assert any(n.startswith("uvicorn-") for n in names)  # serving needs envkit[serve]
    # requirements.txt: one wheels/<file> line per wheel (as MLflow writes it); original kept
    lines = (out / "requirements.txt").read_text().split()
    assert lines == [f"wheels/{n}" for n in names] == data["wheels"]
    assert (out / "original_requirements.txt").read_bytes() == (
        leaf_model / "requirements.txt"
    ).read_bytes()
    conda = yaml.safe_load((out / "conda.yaml").read_text())
    assert [d for d in conda["dependencies"] if isinstance(d, dict)] == [{"pip": lines}]
    mlmodel = yaml.safe_load((out / "MLmodel").read_text())
    assert mlmodel["wheels"]["platform"] == data["platform"]
    assert "wheels" not in yaml.safe_load((leaf_model / "MLmodel").read_text())
    assert data["total_bytes"] == sum(p.stat().st_size for p in (out / "wheels").iterdir())


def test_a_wheeled_model_validates_and_serves_with_the_index_unreachable(
    leaf_model, wheeled, tmp_path
):
    out, _ = wheeled
    env = no_index(tmp_path / "home")
    # The control: the same model, not wheeled, cannot be built with the index closed.
    control = envkit_cli("validate", str(leaf_model), "--format", "json", env=env)
    assert control.returncode == 3, control.stdout + control.stderr
    result = envkit_cli("validate", str(out), "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["spec"]["options"] == ["--no-index"]
    assert "wheeled model: installed from its wheels/ with no index" in report["spec_notes"]
    server = Server(out, "--env-manager", "uv", env=env)
    try:
        server.wait_ready(timeout=600)
        status, body = post_json(server.port, {"inputs": ["x", "y", "z"]})
        assert status == 200 and body["predictions"] == ["1.0.0"] * 3
    finally:
        assert server.stop() == 0, server.output()


def test_info_shows_the_wheels_and_their_size(wheeled):
    out, data = wheeled
    result = envkit_cli("info", str(out), "--format", "json", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    wheels = json.loads(result.stdout)["wheels"]
    assert wheels["files"] == [w.split("/", 1)[1] for w in data["wheels"]]
    assert wheels["total_bytes"] == data["total_bytes"]
    assert wheels["not_for_this_platform"] == []
    text = envkit_cli("info", str(out), env=dict(os.environ)).stdout
    assert f"wheels: {len(data['wheels'])} (" in text


def test_wheels_for_another_platform_are_reported_before_building(wheeled, tmp_path):
    out, _ = wheeled
    other = tmp_path / "other"
    shutil.copytree(out, other)
    # A wheel tagged for Windows only (this test renames it: the tag is what is checked).
    leaf = other / "wheels" / "ektest_leaf-1.0.0-py3-none-any.whl"
    leaf.rename(leaf.with_name("ektest_leaf-1.0.0-py3-none-win_amd64.whl"))
    info = envkit_cli("info", str(other), "--format", "json", env=dict(os.environ))
    assert json.loads(info.stdout)["wheels"]["not_for_this_platform"] == [
        "ektest_leaf-1.0.0-py3-none-win_amd64.whl"
    ]
    home = tmp_path / "home"
    result = envkit_cli("validate", str(other), env=no_index(home))
    assert result.returncode == 3, result.stderr
    assert "not for this platform (ektest_leaf-1.0.0-py3-none-win_amd64.whl)" in result.stderr
    assert not (home / "envs").exists() or not any((home / "envs").iterdir())  # nothing built


def test_add_wheels_with_a_missing_package_leaves_no_output(tmp_path, local_index):
    import envkit.models
    import envkit.pyfunc
    from envkit.errors import EnvironmentBuildError

    model = _save_echo(
        tmp_path / "m",
        [
            "--no-index",
            f"--find-links {local_index.directory.resolve()}",
            "ektest-leaf==9.9.9",  # no such release anywhere
        ],
    )
    with pytest.raises(EnvironmentBuildError, match="downloading the model's wheels failed"):
        envkit.models.add_wheels(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_the_docker_build_context_of_a_wheeled_model_installs_with_no_index(wheeled, tmp_path):
    """build-docker's context (generate-dockerfile writes the same; no engine needed here)."""
    out, data = wheeled
    context = tmp_path / "ctx"
    result = envkit_cli("generate-dockerfile", str(out), "-o", str(context), env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    [requirements] = context.glob("*/model-env/requirements.txt")
    lines = requirements.read_text().splitlines()
    assert lines[0] == "--no-index"
    carried = {w.split("/", 1)[1] for w in data["wheels"] if "/envkit-" not in w}
    copied = {p.name for p in (requirements.parent / "wheels").iterdir()}
    assert copied == carried
    assert all(" @ file:///" in line for line in lines[1:])
    assert all(str(out) not in line for line in lines)  # nothing points at this host
    # The image carries the wheels once: the model's wheels/ links to the environment layer's.
    model_wheels = context / "model" / "wheels"
    assert model_wheels.is_symlink()
    assert os.readlink(model_wheels) == "/opt/envkit/build/model-env/wheels"
    assert (context / "model" / "MLmodel").is_file()


def test_wheel_for_another_platform_takes_its_binary_wheels(tmp_path, local_index):
    from importlib.metadata import version

    import envkit.models
    import envkit.pyfunc

    model = _save_echo(
        tmp_path / "m",
        [
            f"--find-links {local_index.directory.resolve()}",
            "ektest-leaf==1.0.0",
            f"pyyaml=={version('pyyaml')}",  # a release with Windows wheels (binary)
        ],
    )
    wheeled = envkit.models.add_wheels(model, tmp_path / "win", platform="win_amd64")
    assert wheeled.platform == "win_amd64"
    names = [w.split("/", 1)[1] for w in wheeled.wheels]
    assert "ektest_leaf-1.0.0-py3-none-any.whl" in names
    [pyyaml] = [n for n in names if n.startswith("PyYAML-") or n.startswith("pyyaml-")]
    assert pyyaml.endswith("-win_amd64.whl")
    info = envkit_cli("info", str(wheeled.path), "--format", "json", env=dict(os.environ))
    assert json.loads(info.stdout)["wheels"]["not_for_this_platform"] == [pyyaml]


def _save_echo(path: Path, requirements: list[str]) -> Path:
    """A pyfunc model that returns its input, recording ``requirements`` as given."""
    import envkit.pyfunc

    class Echo(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    envkit.pyfunc.save_model(path, python_model=Echo(), pip_requirements=requirements)
    return path
