"""Atomic saves, overwrite rules, and untrusted model directories refused clearly."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
import yaml

import envkit.pyfunc
from envkit.errors import (
    LoaderImportError,
    ModelExistsError,
    UnknownFlavorError,
    UnsafePathError,
)
from envkit.pyfunc import PythonModel


class Echo(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


class Unpicklable(PythonModel):
    def __init__(self):
        self.lock = threading.Lock()  # cannot be pickled

    def predict(self, context, model_input, params=None):
        return model_input


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


def test_failed_save_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=Unpicklable())
    assert _leftovers(tmp_path) == []


def test_saving_onto_a_non_empty_directory_needs_overwrite(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(ModelExistsError, match="overwrite=True"):
        envkit.pyfunc.save_model(target, python_model=Echo())
    assert _leftovers(target) == ["keep.txt"]
    envkit.pyfunc.save_model(target, python_model=Echo(), overwrite=True)
    assert not (target / "keep.txt").exists()
    assert (target / "MLmodel").is_file()
    assert _leftovers(tmp_path) == ["m"]


def test_a_failed_overwrite_keeps_the_previous_model(tmp_path):
    target = tmp_path / "m"
    envkit.pyfunc.save_model(target, python_model=Echo())
    before = (target / "MLmodel").read_text()
    with pytest.raises(TypeError):
        envkit.pyfunc.save_model(target, python_model=Unpicklable(), overwrite=True)
    assert (target / "MLmodel").read_text() == before
    assert _leftovers(tmp_path) == ["m"]


def test_saving_into_an_empty_directory_is_allowed(tmp_path):
    (tmp_path / "m").mkdir()
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    assert (tmp_path / "m" / "MLmodel").is_file()


def _echo_with_pyfunc_conf(tmp_path, **changes):
    """Echo saved at tmp_path/m, then its MLmodel's python_function flavor edited."""
    path = tmp_path / "m"
    envkit.pyfunc.save_model(path, python_model=Echo())
    data = yaml.safe_load((path / "MLmodel").read_text())
    data["flavors"]["python_function"].update(changes)
    (path / "MLmodel").write_text(yaml.safe_dump(data))
    return path


def test_unknown_flavor_without_python_function(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors:\n  h2o:\n    data: model.h2o\n")
    with pytest.raises(UnknownFlavorError, match=r"no python_function flavor \(its flavors: h2o\)"):
        envkit.pyfunc.load_model(tmp_path)


def test_loader_module_that_cannot_be_imported(tmp_path):
    path = _echo_with_pyfunc_conf(tmp_path, loader_module="no_such_pkg.loader")
    with pytest.raises(LoaderImportError, match="'no_such_pkg.loader' cannot be imported"):
        envkit.pyfunc.load_model(path)


def test_dotdot_path_in_mlmodel_is_refused(tmp_path):
    path = _echo_with_pyfunc_conf(tmp_path, python_model="../outside.pkl")
    shutil.copy(path / "python_model.pkl", tmp_path / "outside.pkl")
    with pytest.raises(UnsafePathError, match="outside the model directory"):
        envkit.pyfunc.load_model(path)


def test_symlink_escaping_the_model_is_refused(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    pickle_path = tmp_path / "m" / "python_model.pkl"
    shutil.move(pickle_path, tmp_path / "elsewhere.pkl")
    os.symlink(tmp_path / "elsewhere.pkl", pickle_path)
    with pytest.raises(UnsafePathError, match="python_model.pkl"):
        envkit.pyfunc.load_model(tmp_path / "m")


def test_a_symlink_inside_the_model_is_fine(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    os.symlink("python_model.pkl", tmp_path / "m" / "alias.pkl")
    assert envkit.pyfunc.load_model(tmp_path / "m").predict("x") == "x"


def test_missing_model_file_is_a_format_error(tmp_path):
    from envkit.errors import ModelFormatError

    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    (tmp_path / "m" / "python_model.pkl").unlink()
    with pytest.raises(ModelFormatError, match="python_model.pkl is missing"):
        envkit.pyfunc.load_model(tmp_path / "m")
