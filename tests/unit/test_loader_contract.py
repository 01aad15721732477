"""Third-party loaders: ``loader_module`` + ``_load_pyfunc``, and the envkit.flavors group."""

from __future__ import annotations

import sys
import textwrap

import pytest

import envkit.pyfunc
from envkit.models import Model
from envkit.models.flavors import envkit_loader_for, registered_flavors


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A real (tiny) installed distribution that registers a flavor through entry points."""
    site = tmp_path / "site"
    pkg = site / "acme_flavor"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            import json, os

            class _Impl:
                def __init__(self, path, config):
                    with open(os.path.join(path, "weights.json")) as f:
                        self.w = json.load(f)["w"]
                    self.config = config

                def predict(self, data, params=None):
                    scale = (self.config or {}).get("scale", 1)
                    return [x * self.w * scale for x in data]

            def _load_pyfunc(path, model_config=None):
                return _Impl(path, model_config)
            """
        )
    )
    dist = site / "acme_flavor-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-flavor\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[envkit.flavors]\nacme = acme_flavor\n")
    monkeypatch.syspath_prepend(str(site))
    registered_flavors.cache_clear()
    yield "acme_flavor"
    registered_flavors.cache_clear()
    sys.modules.pop("acme_flavor", None)


def _write_model(path, loader_module, config=None):
    path.mkdir()
    (path / "weights.json").write_text('{"w": 3}')
    conf = {"loader_module": loader_module, "python_version": "3.11.7"}
    if config:
        conf["config"] = config
    Model().add_flavor("python_function", **conf).add_flavor("acme", weights="weights.json").save(
        path
    )


def test_a_third_party_loader_module_loads(tmp_path, third_party):
    _write_model(tmp_path / "m", "acme_flavor", config={"scale": 1})
    model = envkit.pyfunc.load_model(tmp_path / "m")
    assert model.predict([1, 2]) == [3, 6]
    assert envkit.pyfunc.load_model(tmp_path / "m", model_config={"scale": 2}).predict([1]) == [6]


def test_entry_point_flavors_are_registered(third_party):
    assert registered_flavors()["acme"] == "acme_flavor"
    assert registered_flavors()["sklearn"] == "envkit.sklearn"
    # MLflow's module name for a flavor envkit knows maps to the registered module
    assert envkit_loader_for("mlflow.acme") == "acme_flavor"
    assert envkit_loader_for("mlflow.sklearn") == "envkit.sklearn"
    assert envkit_loader_for("mlflow.pyfunc.model") == "envkit.pyfunc.mlflow_compat"
    assert envkit_loader_for("somebody.else") == "somebody.else"


def test_model_saved_with_mlflow_module_name_loads_through_the_registry(tmp_path, third_party):
    _write_model(tmp_path / "m", "mlflow.acme")
    assert envkit.pyfunc.load_model(tmp_path / "m").predict([2]) == [6]


def test_a_loader_module_shipped_in_the_models_code_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = tmp_path / "m"
    (path / "code").mkdir(parents=True)
    (path / "code" / "my_loader_in_code.py").write_text(
        "class M:\n"
        "    def predict(self, data, params=None):\n"
        "        return ['from code/'] * len(data)\n"
        "def _load_pyfunc(path, model_config=None):\n"
        "    return M()\n"
    )
    Model().add_flavor(
        "python_function", loader_module="my_loader_in_code", code="code", python_version="3"
    ).save(path)
    assert envkit.pyfunc.load_model(path).predict([1, 2]) == ["from code/", "from code/"]
    sys.modules.pop("my_loader_in_code", None)
