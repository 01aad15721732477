"""Accuracy corpus: models whose true requirements are known; exact sets are asserted.

Import name != distribution name (sklearn, yaml, PIL, and the ektest wheels whose graph the
tests own), imports that happen only inside predict, imports in code_paths, a models-from-code
file, an optional import that is absent. Any input example makes pandas a requirement: envkit's
schema enforcement turns the served input into a DataFrame, so the example's model needs the
pandas stack to be served.

What a real library pulls in transitively is PyPI's business, not these tests': where one is
involved, the expected set is bounded by the dependencies the *installed* distributions declare
(:func:`declared_closure`), never by a list written down on the day the test was.
"""

from __future__ import annotations

import json
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

import envkit.pyfunc
import envkit.sklearn

PYFUNC = {"envkit", "cloudpickle"}


def names(model_dir: Path) -> set[str]:
    from envkit.deps.requirements import requirement_name

    lines = (model_dir / "requirements.txt").read_text().splitlines()
    return {n for n in map(requirement_name, lines) if n}


def pins_match_installed(model_dir: Path) -> None:
    for line in (model_dir / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name != "envkit":
            assert metadata.version(name) == version, line


def local_model(predict_body: str, load_body: str = "pass"):
    """A PythonModel pickled by value (its class is not importable by name)."""
    code = textwrap.dedent(
        f"""
        import envkit.pyfunc
        class M(envkit.pyfunc.PythonModel):
            def load_context(self, context):
                {load_body}
            def predict(self, context, model_input, params=None):
        """
    ) + textwrap.indent(textwrap.dedent(predict_body), " " * 8)
    namespace = {"__name__": "corpus_model_code"}
    exec(compile(code, "<corpus model>", "exec"), namespace)
    return namespace["M"]()


def declared_closure(*names: str) -> set[str]:
    """``names`` and every distribution they require, transitively, as the installed metadata
    declares it today (extras left out, markers evaluated for this interpreter)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [str(canonicalize_name(n)) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(str(canonicalize_name(req.name)))
    return seen


def sklearn_closure() -> set[str]:
    """scikit-learn and what it declares (all a pipeline may legitimately pull in)."""
    return declared_closure("scikit-learn")


def pandas_stack() -> set[str]:
    """What an input example may add: pandas, numpy, and what the installed pandas declares."""
    return declared_closure("pandas", "numpy")


def assert_pandas_stack(found: set[str]) -> None:
    """pandas and numpy are recorded (schema enforcement needs them); what else of the stack
    is recorded is what the installed pandas really imports, within what it declares."""
    assert {"pandas", "numpy"} <= found


@pytest.mark.parametrize("fmt", ["skops", "cloudpickle"])
def test_iris_pipeline_without_example(tmp_path, iris_pipeline, fmt):
    envkit.sklearn.save_model(iris_pipeline, tmp_path / "m", serialization_format=fmt)
    found = names(tmp_path / "m")
    flavor = {"envkit", "skops" if fmt == "skops" else "cloudpickle"}
    assert {"scikit-learn", "numpy", "scipy"} <= found
    # Nothing but the flavor's needs and sklearn's declared dependencies; pandas is only an
    # optional import of sklearn, and the model gets no DataFrame here.
    assert found - flavor - sklearn_closure() - {"cloudpickle"} == set()
    assert "pandas" not in found
    pins_match_installed(tmp_path / "m")


def test_iris_pipeline_with_a_dataframe_example(tmp_path, iris, iris_pipeline):
    X, _ = iris
    envkit.sklearn.save_model(iris_pipeline, tmp_path / "m", input_example=X.head(3))
    found = names(tmp_path / "m")
    assert_pandas_stack(found)
    assert found - {"envkit", "skops", "cloudpickle"} - sklearn_closure() - pandas_stack() == set()
    provenance = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())
    assert provenance["capture"]["predicted"] is True


def test_import_only_inside_predict_is_seen_with_an_example(tmp_path):
    model = local_model("import yaml\nreturn yaml.safe_dump(str(model_input))")
    envkit.pyfunc.save_model(tmp_path / "with", python_model=model, input_example="hello")
    found = names(tmp_path / "with")
    assert PYFUNC | {"pyyaml"} <= found
    assert_pandas_stack(found)
    assert found - PYFUNC - {"pyyaml"} - pandas_stack() == set()
    # Without an example nothing calls predict: its import is read from the pickled bytecode.
    envkit.pyfunc.save_model(tmp_path / "without", python_model=model)
    assert names(tmp_path / "without") == PYFUNC | {"pyyaml"}
    provenance = json.loads((tmp_path / "without" / "requirements.provenance.json").read_text())
    assert {r["name"]: r["source"] for r in provenance["requirements"]}["pyyaml"] == "static"


@pytest.mark.parametrize(
    ("module", "distribution"),
    [("yaml", "pyyaml"), ("PIL.Image", "pillow"), ("sklearn.preprocessing", "scikit-learn")],
)
def test_import_name_is_not_the_distribution_name(tmp_path, module, distribution):
    model = local_model("return model_input", load_body=f"import {module}")
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model)
    found = names(tmp_path / "m")
    assert PYFUNC | {distribution} <= found
    # and what it pulls in is among what it declares (scikit-learn: numpy, scipy...)
    assert found - PYFUNC - declared_closure(distribution) == set()
    pins_match_installed(tmp_path / "m")


def test_import_name_of_a_distribution_with_a_dependency(tmp_path, local_index, monkeypatch):
    """ektest-top (import name ektop) imports the ektest-leaf it declares (ekleaf), as
    python-dateutil 2.x imported six: both are recorded, pinned as installed."""
    site = local_index.install(tmp_path / "site", "ektest-top==1.0.0", "ektest-leaf==1.0.0")
    monkeypatch.syspath_prepend(str(site))
    model = local_model("return model_input", load_body="import ektop")
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model)
    lines = set((tmp_path / "m" / "requirements.txt").read_text().splitlines())
    assert {"ektest-top==1.0.0", "ektest-leaf==1.0.0"} <= lines
    assert names(tmp_path / "m") == PYFUNC | {"ektest-top", "ektest-leaf"}


def test_imports_of_code_paths_are_captured(tmp_path, local_index, monkeypatch):
    site = local_index.install(tmp_path / "site", "ektest-top==1.0.0", "ektest-leaf==1.0.0")
    monkeypatch.syspath_prepend(str(site))
    helpers = tmp_path / "src" / "corpus_helpers"
    helpers.mkdir(parents=True)
    (helpers / "__init__.py").write_text("import yaml\nfrom ektop import VERSION\n")
    model = local_model("return model_input", load_body="import corpus_helpers")
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model, code_paths=[str(helpers)])
    assert names(tmp_path / "m") == PYFUNC | {"pyyaml", "ektest-top", "ektest-leaf"}
    provenance = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())
    assert provenance["unresolved_modules"] == []  # the model's own code is not "unresolved"


def test_a_models_from_code_file(tmp_path):
    code = tmp_path / "model_code.py"
    code.write_text(
        textwrap.dedent(
            """
            import yaml
            import envkit.pyfunc
            from envkit.models import set_model

            class FromCode(envkit.pyfunc.PythonModel):
                def predict(self, context, model_input, params=None):
                    from PIL import Image
                    return model_input

            set_model(FromCode())
            """
        )
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=str(code))
    # pyyaml imported when the file runs; pillow, imported only in predict, which nothing ran
    # (no input example), read from the file by the static pass
    assert names(tmp_path / "m") == {"envkit", "pyyaml", "pillow"}
    provenance = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())
    sources = {r["name"]: r["source"] for r in provenance["requirements"]}
    assert sources["pyyaml"] == "inferred" and sources["pillow"] == "static"


def test_an_optional_import_that_is_absent_is_not_a_requirement(tmp_path):
    model = local_model(
        "return model_input",
        load_body=(
            "import yaml\n"
            "                try:\n"
            "                    import envkit_corpus_not_installed_anywhere\n"
            "                except ImportError:\n"
            "                    pass"
        ),
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model)
    assert names(tmp_path / "m") == PYFUNC | {"pyyaml"}


def test_a_module_a_pickled_function_refers_to(tmp_path, iris):
    """A FunctionTransformer whose function (pickled by value) uses a module global."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    namespace = {"__name__": "corpus_features"}
    exec(
        "import yaml\nimport numpy as np\n"
        "def features(X):\n    yaml.safe_dump([1])\n    return np.asarray(X) * 2\n",
        namespace,
    )
    X, y = iris
    model = LogisticRegression(max_iter=1000)
    clf = make_pipeline(FunctionTransformer(namespace["features"]), model)
    clf.fit(np.asarray(X), y)
    envkit.sklearn.save_model(clf, tmp_path / "m", serialization_format="cloudpickle")
    found = names(tmp_path / "m")
    assert "pyyaml" in found  # imported by cloudpickle while rebuilding the function
    assert found - {"envkit", "cloudpickle", "pyyaml"} - sklearn_closure() == set()


@pytest.mark.slow
def test_a_model_saved_with_pip_requirements_runs_from_them(tmp_path, shared_cache):
    """pip_requirements replace inference, yet what loading and predicting need is recorded:
    the model validates in an environment built from its requirements.txt alone."""
    model = local_model("import yaml, PIL.Image\nreturn [yaml.safe_dump(list(model_input))]")
    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=model,
        input_example=["x"],
        pip_requirements=[f"pyyaml=={metadata.version('pyyaml')}", "pillow"],
    )
    assert names(tmp_path / "m") == {"envkit", "pyyaml", "pillow", "pandas", "numpy"}
    report = envkit.validate(tmp_path / "m", env_manager="uv", cache_dir=shared_cache)
    assert report.ok, report.headline
