"""Which captured imports make a requirement: the import graphs of the gradient boosting
libraries, replayed on the distributions installed here (no capture subprocess).

xgboost imports scikit-learn when it is installed (without declaring it); scikit-learn imports
joblib, which imports cloudpickle; catboost's optional widget module imports IPython and then
fails on ipywidgets, so it is missing from the modules at the end. None of these is a
requirement of a model that only needs the library.
"""

from __future__ import annotations

import importlib.util

from envkit.deps.distributions import current_index
from envkit.deps.imports import CapturedImports, needed_distributions


def _captured(modules: list[str], edges: list[tuple[str, str]]) -> CapturedImports:
    """``modules`` as imported from their installed files; the model's own importer is a
    module nobody owns (``model_code``)."""
    files = {}
    for name in modules:
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        files[name] = spec.origin
    return CapturedImports(modules=files, edges=edges, env_vars=[])


def _dist(module: str) -> str:
    return current_index().top_level[module][0]


SKLEARN_CHAIN = [
    ("xgboost.compat", "sklearn"),
    ("sklearn.utils", "joblib"),
    ("joblib.externals.loky.backend.reduction", "cloudpickle"),
]


def test_what_an_optional_deserializer_imports_is_not_a_requirement():
    captured = _captured(
        ["xgboost", "sklearn", "joblib", "cloudpickle", "numpy"],
        [("model_code", "xgboost"), ("xgboost.core", "numpy"), *SKLEARN_CHAIN],
    )
    needed = needed_distributions(captured, current_index())
    assert set(needed.distributions) == {_dist("xgboost"), "numpy"}
    assert {"scikit-learn", "joblib", "cloudpickle"} <= set(needed.optional)


def test_what_a_needed_deserializer_imports_is_a_requirement():
    captured = _captured(
        ["xgboost", "sklearn", "joblib", "cloudpickle", "numpy"],
        [("model_code", "xgboost"), ("model_code", "joblib"), *SKLEARN_CHAIN],
    )
    needed = needed_distributions(captured, current_index())
    assert {"joblib", "cloudpickle"} <= set(needed.distributions)
    assert "scikit-learn" not in needed.distributions


def test_an_importer_that_failed_to_import_stands_for_its_package():
    # catboost.widget.ipythonwidget is not among the modules: its import failed.
    captured = _captured(
        ["catboost", "cloudpickle"],
        [("model_code", "catboost"), ("catboost.widget.ipythonwidget", "cloudpickle")],
    )
    needed = needed_distributions(captured, current_index())
    assert set(needed.distributions) == {"catboost"}
    assert "cloudpickle" in needed.optional
