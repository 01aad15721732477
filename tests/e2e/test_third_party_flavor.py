"""A flavor defined outside envkit (tests/data/ektest_flavor, README "Writing a flavor"),
installed for real: its wheel is built from its own pyproject.toml (uv build), installed with
envkit's into a fresh virtualenv, and used there (save, load, entry point, ``envkit info``);
``envkit validate`` rebuilds the model's environment, which installs it from its wheel (a
local --find-links directory the model's requirements name)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

SOURCE = Path(__file__).resolve().parents[1] / "data" / "ektest_flavor"

SAVE_AND_LOAD = """
import json, sys
import numpy as np
import envkit.pyfunc
from envkit.models.flavors import registered_flavors
import ektest_flavor

model_dir, wheels = sys.argv[1], sys.argv[2]
x = np.array([0.0, 1.0, 2.0])
ektest_flavor.save_model(ektest_flavor.Polynomial([2, 0, 1]), model_dir, input_example=x,
                         extra_pip_requirements=[f"--find-links {wheels}"])
print(json.dumps({
    "registered": registered_flavors().get("ektest_poly"),
    "native": ektest_flavor.load_model(model_dir).coefficients,
    "pyfunc": envkit.pyfunc.load_model(model_dir).predict(x).tolist(),
}))
"""


def _run(argv: list[str], *, env: dict[str, str] | None = None, timeout: int = 300):
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without PYTHONPATH (the virtualenv must use its own envkit)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **extra}


@pytest.fixture(scope="session")
def flavor_wheels(tmp_path_factory) -> Path:
    """The ektest-flavor wheel, built from its pyproject.toml (a copy: nothing is written in
    the repository)."""
    root = tmp_path_factory.mktemp("ektest-flavor")
    shutil.copytree(SOURCE, root / "src")
    wheels = root / "wheels"
    uv_build = [sys.executable, "-m", "uv", "build", "--quiet", "--wheel"]
    _run([*uv_build, "--out-dir", str(wheels), str(root / "src")], timeout=600)
    assert [p.name for p in wheels.glob("*.whl")] == ["ektest_flavor-1.0.0-py3-none-any.whl"]
    return wheels


@pytest.fixture(scope="session")
def flavor_venv(tmp_path_factory, flavor_wheels) -> Path:
    """A virtualenv with envkit (this checkout's, as a wheel) and ektest-flavor installed."""
    from envkit.sandbox.selfwheel import build_self_wheel

    root = tmp_path_factory.mktemp("ektest-venv")
    envkit_wheel = build_self_wheel(root / "selfwheel")
    venv = root / "venv"
    uv = [sys.executable, "-m", "uv"]
    _run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
    python = venv / "bin" / "python"
    _run(
        [
            *uv, "pip", "install", "--quiet", "--python", str(python),
            "--find-links", str(flavor_wheels),
            envkit_wheel.requirement(), "ektest-flavor==1.0.0",
            # this interpreter's versions: uv takes them from its cache
            f"numpy=={version('numpy')}", f"pandas=={version('pandas')}",
        ],
        timeout=600,
    )  # fmt: skip
    return python


@pytest.fixture(scope="session")
def poly_model(tmp_path_factory, flavor_venv, flavor_wheels) -> tuple[Path, dict]:
    """The model saved (and loaded back) in the virtualenv, and what that run reported."""
    model = tmp_path_factory.mktemp("ektest-model") / "poly"
    done = _run(
        [str(flavor_venv), "-c", SAVE_AND_LOAD, str(model), str(flavor_wheels)],
        env=_clean_env(),
    )
    return model, json.loads(done.stdout.strip().splitlines()[-1])


def test_the_flavor_saves_and_loads_through_its_entry_point(poly_model):
    model, seen = poly_model
    assert seen == {"registered": "ektest_flavor", "native": [2.0, 0.0, 1.0], "pyfunc": [1, 3, 9]}
    import yaml

    flavors = yaml.safe_load((model / "MLmodel").read_text())["flavors"]
    assert flavors["python_function"]["loader_module"] == "ektest_flavor"
    assert flavors["ektest_poly"]["data"] == "polynomial.json"
    requirements = (model / "requirements.txt").read_text().splitlines()
    assert "ektest-flavor==1.0.0" in requirements  # captured: the loader module imports it


def test_envkit_info_lists_the_flavor_where_it_is_installed(poly_model, flavor_venv):
    model, _ = poly_model
    there = _run([str(flavor_venv), "-m", "envkit", "info", str(model)], env=_clean_env())
    shown = "  ektest_poly (ektest_flavor_version=1.0.0, flavor module ektest_flavor)"
    assert shown in there.stdout.splitlines()
    as_json = _run(
        [str(flavor_venv), "-m", "envkit", "info", str(model), "--format", "json"],
        env=_clean_env(),
    )
    assert json.loads(as_json.stdout)["flavor_modules"] == {"ektest_poly": "ektest_flavor"}
    here = _run([sys.executable, "-m", "envkit", "info", str(model)])  # not installed here
    shown = "  ektest_poly (ektest_flavor_version=1.0.0, no flavor installed here)"
    assert shown in here.stdout.splitlines()


@pytest.mark.timeout(600)
def test_envkit_validate_installs_the_flavor_from_the_models_requirements(poly_model, shared_cache):
    model, _ = poly_model
    done = subprocess.run(
        [sys.executable, "-m", "envkit", "validate", str(model), "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "ENVKIT_HOME": str(shared_cache)},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["output"]["preview"] == "array([1., 3., 9.])"
