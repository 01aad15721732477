"""The h2o flavor's parts that need no H2O cluster: its settings, its ``h2o.yaml`` read back,
and the Java an h2o model needs (recorded, or implied by MLflow's ``h2o_version``)."""

from __future__ import annotations

import pytest


def _model(flavors: dict) -> object:
    from envkit.models.model import Model

    model = Model()
    for name, conf in flavors.items():
        model.add_flavor(name, **conf)
    return model


def test_the_flavor_is_registered_and_stands_for_mlflow_h2o():
    from envkit.models.flavors import envkit_loader_for, registered_flavors

    assert registered_flavors()["h2o"] == "envkit.h2o"
    assert envkit_loader_for("mlflow.h2o") == "envkit.h2o"


def test_required_java_from_the_record_or_the_h2o_version():
    from envkit.sandbox.java import required_java

    recorded = required_java(
        _model({"h2o": {"h2o_version": "3.46.0.12", "java_major_version": 17}})
    )
    assert (recorded.major, recorded.flavor) == (17, "h2o")
    assert required_java(_model({"h2o": {"h2o_version": "3.46.0.12"}})).major == 8


@pytest.mark.parametrize(
    "settings", [["init"], {"init": ["max_mem_size"]}, {"init": {1: "x"}}, {2: {}}]
)
def test_settings_must_be_a_mapping_with_an_init_mapping(settings):
    from envkit.errors import UsageError
    from envkit.h2o import _checked_settings

    with pytest.raises(UsageError, match="must be a mapping"):
        _checked_settings(settings)


def test_settings_are_kept_as_given():
    from envkit.h2o import _checked_settings

    given = {"init": {"max_mem_size": "1G"}, "note": "x"}
    assert _checked_settings(given) == given and _checked_settings(None) == {}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, "cannot read"),
        ("init: {}\n", "names no model_file"),
        ("model_file: GLM_1\ninit: [1]\n", "init of .* is not a mapping"),
        ("model_file: [unclosed\n", "cannot read"),
    ],
)
def test_a_broken_h2o_yaml_is_a_model_format_error(tmp_path, text, error):
    from envkit.errors import ModelFormatError
    from envkit.h2o import _read_settings

    if text is not None:
        (tmp_path / "h2o.yaml").write_text(text)
    with pytest.raises(ModelFormatError, match=error):
        _read_settings(tmp_path)


def test_saving_what_is_not_an_h2o_model_is_a_usage_error(tmp_path):
    import envkit.h2o
    from envkit.errors import UsageError

    with pytest.raises(UsageError, match="saves an H2O model, not a dict"):
        envkit.h2o.save_model({}, tmp_path / "model")
    assert not (tmp_path / "model").exists()
