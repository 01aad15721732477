"""When nothing predicted (no input example, or it failed), the static pass adds what the
model's code and pickles reference: installed distributions labelled ``source: static``, the
rest under ``unresolved_modules``. A failed example makes the capture ``partial`` with the
reason, shown by ``envkit deps``; ``ENVKIT_STRICT_CAPTURE`` makes it an error.

The distributions are the test's own: the ektest wheels (``tests/local_wheels.py``) and
``fake_site`` distributions."""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import pytest
from capture_helpers import requirement_names

import envkit.pyfunc
from envkit.cli import main
from envkit.errors import CaptureError, ModelFailedError

pytestmark = pytest.mark.capture


@pytest.fixture
def ekleaf_installed(tmp_path, local_index, monkeypatch):
    site = local_index.install(tmp_path / "site", "ektest-leaf==1.0.0")
    monkeypatch.syspath_prepend(str(site))


def provenance(model_dir: Path) -> dict:
    return json.loads((model_dir / "requirements.provenance.json").read_text())


def code_file(tmp_path: Path, predict_body: str, header: str = "") -> str:
    code = tmp_path / "model_code.py"
    code.write_text(
        "import envkit.models\nimport envkit.pyfunc\n"
        + textwrap.dedent(header)
        + "\nclass M(envkit.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        + textwrap.indent(textwrap.dedent(predict_body).strip(), " " * 8)
        + "\n\nenvkit.models.set_model(M())\n"
    )
    return str(code)


@pytest.mark.timeout(60)
def test_without_an_example_imports_in_predict_are_read_statically(tmp_path, ekleaf_installed):
    code = code_file(
        tmp_path,
        """
        import ekleaf
        try:
            import envkit_optional_not_installed_zz
        except ImportError:
            pass
        import envkit_required_not_installed_zz
        return model_input
        """,
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=code)
    assert requirement_names(tmp_path / "m") == {"envkit", "ektest-leaf"}
    data = provenance(tmp_path / "m")
    assert data["capture"]["status"] == "ok"  # nothing failed: there was nothing to predict on
    assert data["capture"]["predicted"] is False
    assert data["capture"]["static"] == ["ektest-leaf"]
    leaf = next(r for r in data["requirements"] if r["name"] == "ektest-leaf")
    assert leaf["source"] == "static" and leaf["requirement"] == "ektest-leaf==1.0.0"
    assert leaf["modules"] == ["ekleaf"]
    # Never added when not installed: listed; an optional (guarded) import is not even that.
    assert data["unresolved_modules"] == ["envkit_required_not_installed_zz"]


@pytest.mark.timeout(60)
def test_code_paths_files_and_dynamic_imports_are_read_too(tmp_path, local_index, monkeypatch):
    site = local_index.install(tmp_path / "site", "ektest-top==1.0.0", "ektest-leaf==1.0.0")
    monkeypatch.syspath_prepend(str(site))
    helpers = tmp_path / "src" / "helpers"
    helpers.mkdir(parents=True)
    (helpers / "one.py").write_text(
        "def f():\n    import importlib\n    importlib.import_module('ektop')\n"
    )
    (helpers / "two.py").write_text("from helpers.one import f\nfrom . import one\n")
    code = code_file(tmp_path, "from helpers import two\nreturn model_input")
    envkit.pyfunc.save_model(tmp_path / "m", python_model=code, code_paths=[str(helpers)])
    data = provenance(tmp_path / "m")
    # ektop: a literal import_module in a helper; the model's own helpers are not requirements
    assert requirement_names(tmp_path / "m") == {"envkit", "ektest-top"}
    assert data["unresolved_modules"] == []
    # (ektest-leaf, which ektest-top declares, is installed with it: no need to record it)


@pytest.mark.timeout(60)
def test_a_pickle_the_model_loads_lazily_is_read_from_its_opcodes(tmp_path, fake_site):
    """An artifact pickled with a class of an installed distribution, loaded only in predict:
    the pickle's globals name it, read without unpickling."""
    fake_site.install("ektest-shapes", "3.1.0", {"ekshapes/__init__.py": "class Box:\n    pass\n"})
    import ekshapes

    artifact = tmp_path / "box.pkl"
    artifact.write_bytes(pickle.dumps(ekshapes.Box()))
    code = code_file(
        tmp_path,
        """
        import pickle
        with open(context.artifacts["box"], "rb") as handle:
            pickle.load(handle)
        return model_input
        """,
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=code, artifacts={"box": str(artifact)})
    assert "ektest-shapes==3.1.0" in (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    shapes = next(
        r for r in provenance(tmp_path / "m")["requirements"] if r["name"] == "ektest-shapes"
    )
    assert shapes["source"] == "static"


@pytest.mark.timeout(60)
def test_a_failing_example_is_a_partial_capture_that_deps_shows(tmp_path, ekleaf_installed, capsys):
    import pandas as pd

    code = code_file(tmp_path, "import ekleaf\nreturn model_input['missing']")
    with pytest.warns(UserWarning, match="failed to predict on its input example: KeyError"):
        envkit.pyfunc.save_model(
            tmp_path / "m", python_model=code, input_example=pd.DataFrame({"x": [1]})
        )
    data = provenance(tmp_path / "m")
    assert data["capture"]["status"] == "partial"
    assert (
        "input example failed to predict when saving (KeyError: 'missing')"
        in (data["capture"]["reason"])
    )
    assert "ektest-leaf" in requirement_names(tmp_path / "m")  # the static pass filled the gap

    assert main(["deps", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "capture: partial: requirements were captured without a prediction" in out
    assert "KeyError: 'missing'" in out
    assert "(source static): ektest-leaf" in out
    assert "ektest-leaf==1.0.0  (static from ekleaf" in out

    from envkit.deps.provenance import partial_capture_note

    note = partial_capture_note(tmp_path / "m")
    assert note is not None
    assert note.startswith("the model's requirements were captured without a prediction: ")


@pytest.mark.timeout(60)
def test_a_capture_process_that_fails_is_partial_and_still_read_statically(
    tmp_path, ekleaf_installed, monkeypatch
):
    monkeypatch.setenv("ENVKIT_CAPTURE_TIMEOUT", "0.001")  # the capture process cannot finish
    code = code_file(tmp_path, "return model_input", header="import ekleaf\n")
    with pytest.warns(UserWarning, match="capturing the model's requirements failed"):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=code)
    data = provenance(tmp_path / "m")
    assert data["capture"]["status"] == "partial"
    assert "timed out" in data["capture"]["reason"]
    assert "ektest-leaf" in requirement_names(tmp_path / "m")


@pytest.mark.timeout(60)
def test_strict_capture_makes_a_failing_example_an_error(tmp_path, monkeypatch, ekleaf_installed):
    import pandas as pd

    monkeypatch.setenv("ENVKIT_STRICT_CAPTURE", "1")
    code = code_file(tmp_path, "return model_input['missing']")
    with pytest.raises(ModelFailedError, match="KeyError.*strict mode"):
        envkit.pyfunc.save_model(
            tmp_path / "m", python_model=code, input_example=pd.DataFrame({"x": [1]})
        )
    assert not (tmp_path / "m").exists()


@pytest.mark.timeout(60)
def test_strict_capture_makes_a_capture_that_fails_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVKIT_STRICT_CAPTURE", "1")
    monkeypatch.setenv("ENVKIT_CAPTURE_TIMEOUT", "0.001")
    code = code_file(tmp_path, "return model_input")
    with pytest.raises(CaptureError, match="timed out.*strict mode"):
        envkit.pyfunc.save_model(tmp_path / "m", python_model=code)
    assert not (tmp_path / "m").exists()


@pytest.mark.timeout(60)
def test_code_pickled_by_value_is_read_from_its_bytecode(tmp_path, local_index, monkeypatch):
    """A PythonModel defined in a script or notebook (pickled by value) without an example:
    its predict's imports are read from the pickled bytecode, never by unpickling it."""
    site = local_index.install(tmp_path / "site", "ektest-top==1.0.0", "ektest-leaf==1.0.0")
    monkeypatch.syspath_prepend(str(site))
    namespace = {"__name__": "envkit_test_by_value_model"}
    exec(
        "import envkit.pyfunc\n"
        "class M(envkit.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        import ektop\n"
        "        try:\n"
        "            import envkit_optional_not_installed_zz\n"
        "        except ImportError:\n"
        "            pass\n"
        "        return model_input\n",
        namespace,
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=namespace["M"]())
    assert requirement_names(tmp_path / "m") == {"envkit", "cloudpickle", "ektest-top"}
    data = provenance(tmp_path / "m")
    assert data["capture"]["static"] == ["ektest-top"]
    # the bytecode does not say what a try guards: a missing module there is not listed
    assert data["unresolved_modules"] == []


def test_the_pickle_reader_never_calls_what_it_reads(tmp_path):
    """A pickle that would run a command when loaded: read, nothing runs, its imports listed."""
    import os

    from envkit.deps.static import pickled_code_imports

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    assert pickled_code_imports(path) == []
    assert not marker.exists()
    path.write_bytes(b"\x80\x04not a pickle at all")
    assert pickled_code_imports(path) == []  # unreadable: nothing found, no error
