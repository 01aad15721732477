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
    UsageError,
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
    with pytest.raises(UsageError, match="cannot be pickled"):
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
    with pytest.raises(UsageError, match="cannot be pickled"):
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
    with pytest.raises(LoaderImportError, match="'no_such_pkg.loader' is not installed"):
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


def test_a_killed_save_leaves_nothing_a_later_save_keeps(tmp_path):
    # What a SIGKILLed save leaves (its staging dir, named after a process that is gone) ...
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    leftover = tmp_path / f".m.tmp-{dead}-abcd1234"
    leftover.mkdir()
    (leftover / "MLmodel").write_text("half written")
    # ... and the staging dir of a save still running in another process (this one).
    live = tmp_path / f".m.tmp-{os.getpid()}-live0000"
    live.mkdir()
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    assert not leftover.exists()
    assert live.exists()


@pytest.mark.parametrize("bad", [42, "not-a-file.txt"])
def test_a_python_model_of_the_wrong_kind_is_a_usage_error(tmp_path, bad):
    with pytest.raises(UsageError, match="python_model"):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=bad)
    assert list(tmp_path.iterdir()) == []


def test_a_signature_of_the_wrong_kind_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="signature must be a ModelSignature"):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo(), signature="nope")


def test_code_paths_or_artifacts_that_contain_the_model_are_refused(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "helpers.py").write_text("X = 1\n")
    monkeypatch.chdir(project)
    with pytest.raises(UsageError, match="contains the model being saved"):
        envkit.pyfunc.save_model(project / "m", python_model=Echo(), code_paths=["."])
    with pytest.raises(UsageError, match="contains the model being saved"):
        envkit.pyfunc.save_model(project / "m", python_model=Echo(), artifacts={"d": str(project)})
    assert sorted(p.name for p in project.iterdir()) == ["helpers.py"]


def test_links_out_of_an_artifact_directory_are_refused(tmp_path):
    art = tmp_path / "art"
    art.mkdir()
    (art / "weights.txt").write_text("1")
    os.symlink("/etc", art / "etc-link")
    with pytest.raises(UsageError, match="outside"):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo(), artifacts={"a": str(art)})
    assert not (tmp_path / "m").exists()
    (art / "etc-link").unlink()
    os.symlink("weights.txt", art / "alias.txt")  # a link inside the tree is fine
    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo(), artifacts={"a": str(art)})
    assert (tmp_path / "m" / "artifacts" / "art" / "alias.txt").read_text() == "1"


def test_a_corrupt_pickle_is_a_format_error_naming_the_file(tmp_path, iris_pipeline):
    import envkit.sklearn
    from envkit.errors import ModelFormatError

    envkit.sklearn.save_model(iris_pipeline, tmp_path / "m")
    (tmp_path / "m" / "model.pkl").write_bytes(b"garbage\n")
    with pytest.raises(ModelFormatError, match="model.pkl cannot be deserialized"):
        envkit.sklearn.load_model(tmp_path / "m")
    with pytest.raises(ModelFormatError, match="model.pkl cannot be deserialized"):
        envkit.pyfunc.load_model(tmp_path / "m")
