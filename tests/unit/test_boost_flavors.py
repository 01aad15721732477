"""The gradient boosting flavors (envkit.xgboost, envkit.lightgbm, envkit.catboost): MLflow's
keys and files, load_model's native object, the pyfunc predict MLflow gives each library, the
default requirements, and what an MLmodel may not make them do. Tiny models trained here on
twelve rows; saved without the capture subprocess (tests/unit/conftest.py). The interop with
real MLflow, the capture, validate and serve are in tests/e2e/test_flavors_boost.py."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from importlib.metadata import packages_distributions, version

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
import yaml
from flavor_models import catboost as cb_models
from flavor_models import lightgbm as lgb_models
from flavor_models import xgboost as xgb_models

import envkit
import envkit.catboost
import envkit.lightgbm
import envkit.pyfunc
import envkit.xgboost
from envkit.errors import ModelFormatError, UsageError

# Imported as envkit does: catboost's optional IPython import (jedi) must not raise this
# process's recursion limit, on which other tests (deeply nested payloads) rely.
catboost = envkit.catboost._catboost()

X, Y = xgb_models.training_data()


def _mlmodel(path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def _requirement_names(path) -> set[str]:
    from envkit.deps.requirements import requirement_name

    return {requirement_name(line) for line in (path / "requirements.txt").read_text().split()}


def _xgb_regressor():
    return xgb.XGBRegressor(n_estimators=3, max_depth=2, n_jobs=1).fit(X, X["f0"])


def _lgb_regressor():
    return lgb.LGBMRegressor(n_estimators=3, min_child_samples=2, n_jobs=1, verbose=-1).fit(
        X, X["f0"]
    )


def _cb(cls, **kwargs):
    model = cls(iterations=3, depth=2, thread_count=1, verbose=False, allow_writing_files=False)
    return model.fit(X, Y if cls is not catboost.CatBoostRegressor else X["f0"], **kwargs)


# (flavor module, model factory, save kwargs, flavor section expected besides the version)
XGB_CASES = {
    "booster-ubj": (
        lambda: xgb_models.booster(X, Y),
        {},
        {"data": "model.ubj", "model_class": "xgboost.core.Booster", "model_format": "ubj"},
    ),
    "classifier-json": (
        lambda: xgb_models.classifier(X, Y),
        {"model_format": "json"},
        {
            "data": "model.json",
            "model_class": "xgboost.sklearn.XGBClassifier",
            "model_format": "json",
        },
    ),
    "regressor-ubj": (
        _xgb_regressor,
        {},
        {"data": "model.ubj", "model_class": "xgboost.sklearn.XGBRegressor", "model_format": "ubj"},
    ),
}


@pytest.mark.parametrize("case", sorted(XGB_CASES))
def test_xgboost_round_trips_with_mlflow_keys(tmp_path, case):
    make, kwargs, section = XGB_CASES[case]
    model = make()
    envkit.xgboost.save_model(model, tmp_path / "m", input_example=X.head(3), **kwargs)
    mlmodel = _mlmodel(tmp_path / "m")
    assert mlmodel["flavors"]["xgboost"] == {
        **section,
        "xgb_version": xgb.__version__,
        "code": None,
    }
    pyfunc_conf = mlmodel["flavors"]["python_function"]
    assert pyfunc_conf["loader_module"] == "envkit.xgboost"
    assert pyfunc_conf["data"] == section["data"]
    assert (tmp_path / "m" / section["data"]).is_file()

    loaded = envkit.xgboost.load_model(tmp_path / "m")
    assert type(loaded) is type(model)
    native = xgb.DMatrix(X) if isinstance(model, xgb.Booster) else X
    expected = model.predict(native)
    np.testing.assert_array_equal(loaded.predict(native), expected)
    pyfunc = envkit.pyfunc.load_model(tmp_path / "m")
    np.testing.assert_array_equal(pyfunc.predict(X), expected)
    assert type(pyfunc.get_raw_model()) is type(model)


def test_xgboost_pyfunc_passes_the_signature_params_to_xgboost(tmp_path, caplog):
    booster = xgb_models.booster(X, Y)
    example = (X.head(3), {"output_margin": False, "no_such_param": 1})
    envkit.xgboost.save_model(booster, tmp_path / "m", input_example=example)
    pyfunc = envkit.pyfunc.load_model(tmp_path / "m")
    with caplog.at_level(logging.WARNING, logger="envkit.xgboost"):
        margins = pyfunc.predict(X, params={"output_margin": True, "no_such_param": 2})
    np.testing.assert_allclose(margins, booster.predict(xgb.DMatrix(X), output_margin=True))
    # A param xgboost's predict does not take is left out, as MLflow's wrapper does.
    assert "no_such_param" in caplog.text


def test_a_classifier_gives_probabilities_through_its_raw_model(tmp_path):
    """As in MLflow, the pyfunc predicts labels; predict_proba is the raw model's."""
    model = xgb_models.classifier(X, Y)
    envkit.xgboost.save_model(model, tmp_path / "m")
    pyfunc = envkit.pyfunc.load_model(tmp_path / "m")
    np.testing.assert_array_equal(pyfunc.predict(X), model.predict(X))
    np.testing.assert_allclose(pyfunc.get_raw_model().predict_proba(X), model.predict_proba(X))


LGB_SKOPS = sorted(envkit.lightgbm.SKOPS_TRUSTED_TYPES)
LGB_CASES = {
    "booster": (
        lambda: lgb_models.booster(X, Y),
        {},
        {"data": "model.lgb", "model_class": "lightgbm.basic.Booster"},
        "skops",
        LGB_SKOPS,
    ),
    "classifier-skops": (
        lambda: lgb_models.classifier(X, Y),
        {},
        {"data": "model.skops", "model_class": "lightgbm.sklearn.LGBMClassifier"},
        "skops",
        LGB_SKOPS,
    ),
    "regressor-cloudpickle": (
        _lgb_regressor,
        {"serialization_format": "cloudpickle"},
        {"data": "model.pkl", "model_class": "lightgbm.sklearn.LGBMRegressor"},
        "cloudpickle",
        None,
    ),
    "classifier-pickle": (
        lambda: lgb_models.classifier(X, Y),
        {"serialization_format": "pickle"},
        {"data": "model.pkl", "model_class": "lightgbm.sklearn.LGBMClassifier"},
        "pickle",
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(LGB_CASES))
def test_lightgbm_round_trips_with_mlflow_keys(tmp_path, case):
    make, kwargs, section, fmt, trusted = LGB_CASES[case]
    model = make()
    envkit.lightgbm.save_model(model, tmp_path / "m", input_example=X.head(3), **kwargs)
    mlmodel = _mlmodel(tmp_path / "m")
    assert mlmodel["flavors"]["lightgbm"] == {
        **section,
        "lgb_version": lgb.__version__,
        "code": None,
        "serialization_format": fmt,
        "skops_trusted_types": trusted,
    }
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "envkit.lightgbm"
    assert mlmodel["flavors"]["python_function"]["data"] == section["data"]

    loaded = envkit.lightgbm.load_model(tmp_path / "m")
    assert type(loaded) is type(model)
    expected = model.predict(X)
    np.testing.assert_array_equal(loaded.predict(X), expected)
    np.testing.assert_array_equal(envkit.pyfunc.load_model(tmp_path / "m").predict(X), expected)


CB_CASES = {
    "classifier": (lambda: _cb(catboost.CatBoostClassifier), {}, "CatBoostClassifier", "cbm"),
    "regressor-json": (
        lambda: _cb(catboost.CatBoostRegressor),
        {"format": "json"},
        "CatBoostRegressor",
        "json",
    ),
    "catboost": (
        lambda: catboost.CatBoost(
            {"iterations": 3, "thread_count": 1, "verbose": False, "allow_writing_files": False}
        ).fit(X, X["f0"]),
        {},
        "CatBoost",
        "cbm",
    ),
}


@pytest.mark.parametrize("case", sorted(CB_CASES))
def test_catboost_round_trips_with_mlflow_keys(tmp_path, case):
    make, kwargs, model_type, save_format = CB_CASES[case]
    model = make()
    envkit.catboost.save_model(model, tmp_path / "m", input_example=X.head(3), **kwargs)
    mlmodel = _mlmodel(tmp_path / "m")
    assert mlmodel["flavors"]["catboost"] == {
        "catboost_version": catboost.__version__,
        "code": None,
        "data": "model.cb",
        "model_type": model_type,
        "save_format": save_format,
    }
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "envkit.catboost"
    assert mlmodel["flavors"]["python_function"]["data"] == "model.cb"

    loaded = envkit.catboost.load_model(tmp_path / "m")
    assert type(loaded) is type(model)
    expected = model.predict(X)
    np.testing.assert_allclose(loaded.predict(X), expected)
    np.testing.assert_allclose(envkit.pyfunc.load_model(tmp_path / "m").predict(X), expected)


def test_the_flavor_modules_give_mlflow_constants():
    assert envkit.xgboost.FLAVOR_NAME == "xgboost"
    assert envkit.lightgbm.FLAVOR_NAME == "lightgbm"
    assert envkit.catboost.FLAVOR_NAME == "catboost"
    assert envkit.xgboost.SUPPORTED_MODEL_FORMATS == ("ubj", "json", "xgb")
    assert envkit.lightgbm.SUPPORTED_SERIALIZATION_FORMATS == ("pickle", "cloudpickle", "skops")


def _provider(module: str) -> str:
    return packages_distributions()[module][0]


@pytest.mark.parametrize(
    ("flavor", "make", "kwargs", "present", "absent"),
    [
        ("xgboost", lambda: xgb_models.booster(X, Y), {}, {"xgboost"}, {"scikit-learn"}),
        ("xgboost", lambda: xgb_models.classifier(X, Y), {}, {"xgboost", "scikit-learn"}, set()),
        ("lightgbm", lambda: lgb_models.booster(X, Y), {}, {"lightgbm"}, {"scikit-learn", "skops"}),
        (
            "lightgbm",
            lambda: lgb_models.classifier(X, Y),
            {"serialization_format": "cloudpickle"},
            {"lightgbm", "scikit-learn", "cloudpickle"},
            {"skops"},
        ),
        ("catboost", lambda: cb_models.classifier(X, Y), {}, {"catboost"}, {"scikit-learn"}),
    ],
    ids=["xgb-booster", "xgb-classifier", "lgb-booster", "lgb-classifier", "catboost"],
)
def test_default_requirements_pin_the_library_as_installed(
    tmp_path, flavor, make, kwargs, present, absent
):
    """Without capture a model records its flavor's defaults: the library, by the distribution
    installed here that provides its import (xgboost-cpu provides xgboost), and scikit-learn
    only for the scikit-learn API."""
    module = getattr(envkit, flavor)
    module.save_model(make(), tmp_path / "m", **kwargs)
    lines = (tmp_path / "m" / "requirements.txt").read_text().split()
    for name in present:
        dist = _provider(name) if name in ("xgboost", "lightgbm", "catboost") else name
        assert f"{dist}=={version(dist)}" in lines
    assert f"envkit=={envkit.__version__}" in lines
    assert not absent & _requirement_names(tmp_path / "m")


def test_pin_library_names_the_distribution_that_provides_the_import():
    from envkit.pyfunc.flavor_kit import pin_library

    assert pin_library("yaml", "yaml").lower() == f"pyyaml=={version('PyYAML')}"
    assert pin_library("numpy", "numpy") == f"numpy=={version('numpy')}"
    assert pin_library("envkit_no_such_module", "envkit-no-such-dist") == "envkit-no-such-dist"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda p: envkit.xgboost.save_model(xgb_models.booster(X, Y), p, model_format="pkl"),
            "model_format must be one of ubj, json, xgb",
        ),
        (
            lambda p: envkit.xgboost.save_model(lgb_models.booster(X, Y), p),
            "xgb_model must be an xgboost.Booster",
        ),
        (
            lambda p: envkit.lightgbm.save_model(
                lgb_models.classifier(X, Y), p, serialization_format="joblib"
            ),
            "serialization_format must be one of",
        ),
        (
            lambda p: envkit.lightgbm.save_model(xgb_models.booster(X, Y), p),
            "lgb_model must be a lightgbm.Booster",
        ),
        (lambda p: envkit.catboost.save_model(X, p), "cb_model must be a CatBoost model"),
    ],
    ids=["xgb-format", "xgb-type", "lgb-format", "lgb-type", "cb-type"],
)
def test_bad_arguments_are_refused_before_writing(tmp_path, call, message):
    with pytest.raises(UsageError, match=message):
        call(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def _edit_flavor(path, flavor: str, **changes) -> None:
    data = _mlmodel(path)
    data["flavors"][flavor].update(changes)
    (path / "MLmodel").write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    "model_class",
    ["os.system", "xgboost.DMatrix", "antigravity.Booster", "xgboost.nope.Booster", "Booster"],
)
def test_an_mlmodel_cannot_make_xgboost_import_or_build_another_class(tmp_path, model_class):
    envkit.xgboost.save_model(xgb_models.booster(X, Y), tmp_path / "m")
    _edit_flavor(tmp_path / "m", "xgboost", model_class=model_class)
    with pytest.raises(ModelFormatError, match="model_class"):
        envkit.xgboost.load_model(tmp_path / "m")
    assert "antigravity" not in sys.modules


def test_an_xgboost_subclass_from_the_model_code_loads(tmp_path):
    code = tmp_path / "mycode.py"
    code.write_text("import xgboost\n\n\nclass MyClassifier(xgboost.XGBClassifier):\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        from mycode import MyClassifier

        model = MyClassifier(n_estimators=2, max_depth=2, n_jobs=1).fit(X, Y)
        envkit.xgboost.save_model(model, tmp_path / "m", code_paths=[code])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mycode", None)
    assert _mlmodel(tmp_path / "m")["flavors"]["xgboost"]["model_class"] == "mycode.MyClassifier"
    loaded = envkit.xgboost.load_model(tmp_path / "m")
    assert type(loaded).__name__ == "MyClassifier"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    sys.modules.pop("mycode", None)


def test_an_mlmodel_cannot_make_catboost_build_another_class(tmp_path):
    envkit.catboost.save_model(cb_models.classifier(X, Y), tmp_path / "m")
    _edit_flavor(tmp_path / "m", "catboost", model_type="Pool")
    with pytest.raises(ModelFormatError, match="model_type 'Pool'"):
        envkit.catboost.load_model(tmp_path / "m")


def test_mlflow_loader_modules_map_to_envkit_and_mlflow_is_not_needed():
    from envkit.deps.mismatch import not_needed_for
    from envkit.models.flavors import envkit_loader_for
    from envkit.models.model import Model

    for flavor in ("xgboost", "lightgbm", "catboost"):
        assert envkit_loader_for(f"mlflow.{flavor}") == f"envkit.{flavor}"
        model = Model().add_flavor("python_function", loader_module=f"mlflow.{flavor}")
        assert not_needed_for(model) == ("mlflow",)


def test_log_model_saves_into_the_run_and_loads_by_runs_uri(tmp_path):
    envkit.set_tracking_dir(tmp_path / "runs")
    try:
        with envkit.start_run():
            infos = {
                "xgboost": envkit.xgboost.log_model(xgb_models.booster(X, Y), name="xgb"),
                "lightgbm": envkit.lightgbm.log_model(lgb_models.classifier(X, Y), name="lgb"),
                "catboost": envkit.catboost.log_model(cb_models.classifier(X, Y), name="cb"),
            }
        for flavor, info in infos.items():
            assert info.model_uri.startswith("runs:/")
            assert flavor in info.flavors
            assert getattr(envkit, flavor).load_model(info.model_uri) is not None
    finally:
        envkit.set_tracking_dir(None)


def test_importing_the_flavors_imports_no_library():
    code = (
        "import sys, envkit.xgboost, envkit.lightgbm, envkit.catboost; "
        "print([m for m in ('xgboost', 'lightgbm', 'catboost', 'pandas', 'numpy', 'sklearn') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_loading_catboost_keeps_the_recursion_limit():
    code = (
        "import sys, envkit.catboost; before = sys.getrecursionlimit(); "
        "envkit.catboost._catboost(); print(before == sys.getrecursionlimit())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_info_shows_the_class_format_and_library_version(tmp_path):
    envkit.xgboost.save_model(xgb_models.booster(X, Y), tmp_path / "m")
    out = subprocess.run(
        [sys.executable, "-m", "envkit", "info", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        check=True,
    )
    shown = "model_class=xgboost.core.Booster, model_format=ubj, xgb_version="
    assert f"xgboost ({shown}{xgb.__version__})" in out.stdout
    assert "python_function (loader_module=envkit.xgboost)" in out.stdout
