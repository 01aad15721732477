"""The save-time example check and the capture subprocess see the model as a load does: its
code_paths in the layout they are copied to (``code/<name>``, first on ``sys.path``), its
artifacts and its model_config. One test per flavor and per way of passing code: a file, a
directory (a namespace package) and a package.

The helper imports ``ekleaf`` (the ektest-leaf wheel of ``tests/local_wheels.py``) only when
the model predicts, as the issue's ``fmt_helper`` imports ``tabulate``: the pin is the test's.
"""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest

import envkit.pyfunc

pytestmark = pytest.mark.capture  # these test the capture subprocess itself

HELPER = "import ekleaf\n\ndef fmt(x):\n    return f'{x}@{ekleaf.VERSION}'\n"

# way of passing code -> (what to write under src/, the code_paths entry, the import statement)
WAYS = {
    "file": ({"fmt_helper.py": HELPER}, "fmt_helper.py", "from fmt_helper import fmt"),
    "directory": (
        {"helpers/fmt_helper.py": HELPER},
        "helpers",
        "from helpers.fmt_helper import fmt",
    ),
    "package": (
        {"fmtpkg/__init__.py": "from fmtpkg.impl import fmt\n", "fmtpkg/impl.py": HELPER},
        "fmtpkg",
        "from fmtpkg import fmt",
    ),
}


@pytest.fixture
def ekleaf_installed(tmp_path, local_index, monkeypatch):
    """ektest-leaf 1.0.0 installed in a site directory on sys.path (the capture inherits it)."""
    site = local_index.install(tmp_path / "site", "ektest-leaf==1.0.0")
    monkeypatch.syspath_prepend(str(site))
    return site


def write_code(tmp_path: Path, way: str) -> tuple[str, str]:
    """Write the helper code for ``way`` outside sys.path; (code_paths entry, import line)."""
    files, entry, import_line = WAYS[way]
    src = tmp_path / "src"
    for relative, text in files.items():
        (src / relative).parent.mkdir(parents=True, exist_ok=True)
        (src / relative).write_text(text)
    return str(src / entry), import_line


def models_from_code(tmp_path: Path, import_line: str) -> str:
    code = tmp_path / "cp.py"
    code.write_text(
        textwrap.dedent(
            f"""
            import envkit.models
            import envkit.pyfunc

            class M(envkit.pyfunc.PythonModel):
                def predict(self, context, model_input, params=None):
                    {import_line}
                    return [fmt(v) for v in model_input["x"]]

            envkit.models.set_model(M())
            """
        )
    )
    return str(code)


def pickled_model(import_line: str):
    """A PythonModel pickled by value whose predict imports the helper."""
    namespace = {"__name__": "envkit_test_code_paths_model"}
    exec(
        "import envkit.pyfunc\n"
        "class M(envkit.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        f"        {import_line}\n"
        "        return [fmt(v) for v in model_input['x']]\n",
        namespace,
    )
    return namespace["M"]()


def sklearn_model(import_line: str, code_path: str):
    """A pipeline whose first step (a function pickled by value) imports the helper; fitted
    with the helper importable, as its author would (then forgotten again)."""
    import sys

    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    namespace = {"__name__": "envkit_test_code_paths_sklearn"}
    exec(f"def through_helper(X):\n    {import_line}\n    fmt(1)\n    return X\n", namespace)
    import pandas as pd

    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    pipeline = make_pipeline(FunctionTransformer(namespace["through_helper"]), LinearRegression())
    where = str(Path(code_path).parent)
    sys.path.insert(0, where)
    try:
        pipeline.fit(X, [1.0, 2.0, 3.0])
    finally:
        sys.path.remove(where)
        for name in ("fmt_helper", "helpers", "helpers.fmt_helper", "fmtpkg", "fmtpkg.impl"):
            sys.modules.pop(name, None)
    return pipeline


def save(flavor: str, tmp_path: Path, way: str) -> Path:
    import pandas as pd

    code_path, import_line = write_code(tmp_path, way)
    example = pd.DataFrame({"x": [1.0, 2.0]})
    target = tmp_path / "m"
    if flavor == "sklearn":
        from envkit import sklearn as sklearn_flavor

        sklearn_flavor.save_model(
            sklearn_model(import_line, code_path),
            target,
            input_example=example,
            code_paths=[code_path],
        )
        return target
    model = (
        models_from_code(tmp_path, import_line) if flavor == "code" else pickled_model(import_line)
    )
    envkit.pyfunc.save_model(
        target, python_model=model, input_example=example, code_paths=[code_path]
    )
    return target


@pytest.mark.timeout(120)
@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize("flavor", ["code", "pickled", "sklearn"])
def test_a_helper_shipped_with_code_paths_is_seen_when_saving_and_captured(
    tmp_path, ekleaf_installed, flavor, way
):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the example predicts when saving: no warning
        model_dir = save(flavor, tmp_path, way)
    lines = (model_dir / "requirements.txt").read_text().splitlines()
    assert "ektest-leaf==1.0.0" in lines
    provenance = json.loads((model_dir / "requirements.provenance.json").read_text())
    assert provenance["capture"]["status"] == "ok"
    assert provenance["capture"]["predicted"] is True
    leaf = next(r for r in provenance["requirements"] if r["name"] == "ektest-leaf")
    assert leaf["source"] == "inferred"  # seen imported, not read statically
    assert provenance["unresolved_modules"] == []


@pytest.mark.timeout(60)
def test_the_saving_process_forgets_the_staged_code_afterwards(tmp_path, ekleaf_installed):
    import sys

    import pandas as pd

    code_path, import_line = write_code(tmp_path, "file")
    before = list(sys.path)
    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=models_from_code(tmp_path, import_line),
        input_example=pd.DataFrame({"x": [1]}),
        code_paths=[code_path],
    )
    assert sys.path == before
    assert "fmt_helper" not in sys.modules  # a later load imports the saved copy
    loaded = envkit.pyfunc.load_model(tmp_path / "m")
    assert loaded.predict(pd.DataFrame({"x": [1]})) == ["1@1.0.0"]
    assert Path(sys.modules["fmt_helper"].__file__).parent == tmp_path / "m" / "code"


@pytest.mark.timeout(60)
def test_the_models_from_code_file_runs_with_its_code_paths_and_config(tmp_path, ekleaf_installed):
    """A models-from-code file that imports its helper at the top and reads model_config and
    an artifact while loading: saved, checked and captured as a load runs it."""
    import pandas as pd

    code_path, import_line = write_code(tmp_path, "package")
    (tmp_path / "table.txt").write_text("rows")
    code = tmp_path / "cp.py"
    code.write_text(
        textwrap.dedent(
            f"""
            import envkit.models
            import envkit.pyfunc
            {import_line}

            class M(envkit.pyfunc.PythonModel):
                def load_context(self, context):
                    self.suffix = context.model_config["suffix"]
                    with open(context.artifacts["table"]) as handle:
                        self.table = handle.read()

                def predict(self, context, model_input, params=None):
                    return [fmt(v) + self.suffix + self.table for v in model_input["x"]]

            envkit.models.set_model(M())
            """
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        envkit.pyfunc.save_model(
            tmp_path / "m",
            python_model=str(code),
            input_example=pd.DataFrame({"x": [1]}),
            code_paths=[code_path],
            artifacts={"table": str(tmp_path / "table.txt")},
            model_config={"suffix": "!"},
        )
    assert "ektest-leaf==1.0.0" in (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    loaded = envkit.pyfunc.load_model(tmp_path / "m")
    assert loaded.predict(pd.DataFrame({"x": [2]})) == ["2@1.0.0!rows"]
