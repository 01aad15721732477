"""The pieces every library flavor shares (envkit.pyfunc.flavor_kit)."""

from __future__ import annotations

import sys

import pytest

from envkit.errors import LoaderImportError, ModelFormatError
from envkit.pyfunc.flavor_kit import import_library, open_flavor, pyfunc_flavor_directory


def test_a_missing_library_names_the_package_to_install():
    with pytest.raises(LoaderImportError) as caught:
        import_library("envkit_no_such_lib.core", "envkit-no-such-lib", flavor="nosuch")
    message = str(caught.value)
    assert message.startswith("the nosuch flavor needs the package 'envkit-no-such-lib'")
    assert "pip install envkit-no-such-lib" in message
    assert caught.value.module == "envkit_no_such_lib"
    assert caught.value.exit_code == 1


def test_a_library_whose_own_import_fails_keeps_its_error(tmp_path, monkeypatch):
    (tmp_path / "ekbroken_lib.py").write_text("import ekbroken_dependency_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        import_library("ekbroken_lib")
    assert caught.value.name == "ekbroken_dependency_missing"
    sys.modules.pop("ekbroken_lib", None)


def _model(tmp_path, section: str) -> None:
    (tmp_path / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n    loader_module: envkit.ektest\n    model_path: data/model.bin\n"
        f"{section}"
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "model.bin").write_bytes(b"weights")


def test_open_flavor_returns_the_section_and_keeps_files_inside(tmp_path):
    _model(tmp_path, "  ektest:\n    data: data/model.bin\n    escape: ../../etc/passwd\n")
    opened = open_flavor(tmp_path, "ektest")
    assert opened.conf["data"] == "data/model.bin"
    assert opened.file("data").read_bytes() == b"weights"
    with pytest.raises(ModelFormatError):
        opened.file("escape")
    with pytest.raises(ModelFormatError):
        opened.file("absent")


def test_open_flavor_without_the_section_is_a_format_error(tmp_path):
    _model(tmp_path, "")
    with pytest.raises(ModelFormatError):
        open_flavor(tmp_path, "ektest")


def test_pyfunc_directory_from_the_model_path_mlflow_passes(tmp_path):
    _model(tmp_path, "  ektest:\n    data: data/model.bin\n")
    for given in (tmp_path, tmp_path / "data" / "model.bin", tmp_path / "data"):
        opened = pyfunc_flavor_directory(str(given), "ektest")
        assert opened.path == tmp_path and opened.conf["data"] == "data/model.bin"
        assert opened.pyfunc_conf()["model_path"] == "data/model.bin"
