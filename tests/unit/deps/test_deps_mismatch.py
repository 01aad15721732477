"""The load-time comparison of recorded requirements with this interpreter."""

from __future__ import annotations

import platform
import warnings

import pytest
from capture_helpers import model_importing

import envkit.pyfunc
from envkit.deps.mismatch import (
    DependencyMismatchWarning,
    Mismatch,
    check_requirement,
    find_mismatches,
)
from envkit.errors import DependencyMismatchError, UsageError


def _model_dir(tmp_path, requirements, python=None):
    (tmp_path / "requirements.txt").write_text("\n".join(requirements))
    python = python or platform.python_version()
    (tmp_path / "python_env.yaml").write_text(
        f"python: {python}\nbuild_dependencies: []\ndependencies:\n- -r requirements.txt\n"
    )
    return tmp_path


def test_satisfied_requirements_are_not_mismatches(tmp_path):
    from importlib.metadata import version

    model = _model_dir(
        tmp_path, [f"pyyaml=={version('pyyaml')}", "numpy>=1", "-c constraints.txt", "./local.whl"]
    )
    assert find_mismatches(model) == []


def test_wrong_and_missing_versions_are_grouped(tmp_path):
    from importlib.metadata import version

    model = _model_dir(tmp_path, ["pyyaml==1.0", "not-installed-pkg-zz==2.0"])
    assert find_mismatches(model) == [
        Mismatch("pyyaml", version("pyyaml"), "pyyaml==1.0"),
        Mismatch("not-installed-pkg-zz", None, "not-installed-pkg-zz==2.0"),
    ]
    assert str(find_mismatches(model)[1]) == (
        "not-installed-pkg-zz (current: uninstalled, required: not-installed-pkg-zz==2.0)"
    )


def test_markers_that_do_not_apply_are_skipped(tmp_path):
    model = _model_dir(tmp_path, ['not-installed-pkg-zz==2.0; sys_platform == "win32_nope"'])
    assert find_mismatches(model) == []


def test_an_extra_whose_distributions_are_missing_is_a_mismatch():
    # pandas declares numexpr/bottleneck/numba for its "performance" extra; none is installed.
    mismatch = check_requirement("pandas[performance]")
    assert mismatch is not None
    assert mismatch.name == "pandas[performance]"
    assert "without" in (mismatch.current or "")


def test_python_minor_version_is_compared(tmp_path):
    major, minor, _ = platform.python_version_tuple()
    model = _model_dir(tmp_path, [], python=f"{major}.{int(minor) + 1}.0")
    assert [m.name for m in find_mismatches(model)] == ["python"]
    same_minor = _model_dir(tmp_path, [], python=f"{major}.{minor}.999")
    assert find_mismatches(same_minor) == []


def test_not_needed_distributions_are_skipped(tmp_path):
    model = _model_dir(tmp_path, ["mlflow==3.17.2"])
    assert find_mismatches(model, not_needed=["MLflow"]) == []
    assert len(find_mismatches(model)) == 1


def test_a_dev_build_of_envkit_is_not_a_mismatch():
    from envkit.deps.mismatch import _is_dev_version

    assert _is_dev_version("0.2.0.dev3")
    assert _is_dev_version("0.1.0+g1234")
    assert not _is_dev_version("0.1.0")


def _saved_with(tmp_path, requirement):
    envkit.pyfunc.save_model(
        tmp_path / "m", python_model=model_importing(), extra_pip_requirements=[requirement]
    )
    return tmp_path / "m"


def test_load_warns_once_per_model_with_every_mismatch(tmp_path):
    model = _saved_with(tmp_path, "not-installed-pkg-zz==2.0")
    with pytest.warns(DependencyMismatchWarning) as record:
        envkit.pyfunc.load_model(model)
    assert len(record) == 1
    assert record[0].filename == __file__  # points at the code that loaded the model
    message = str(record[0].message)
    assert "not-installed-pkg-zz (current: uninstalled, required: not-installed-pkg-zz==2.0)" in (
        message
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        envkit.pyfunc.load_model(model)  # the same model again: no second warning


def test_the_policy_variable(tmp_path, monkeypatch):
    model = _saved_with(tmp_path, "not-installed-pkg-zz==2.0")
    monkeypatch.setenv("ENVKIT_DEPENDENCY_MISMATCH", "ignore")
    envkit.pyfunc.load_model(model)
    monkeypatch.setenv("ENVKIT_DEPENDENCY_MISMATCH", "error")
    with pytest.raises(DependencyMismatchError, match="not-installed-pkg-zz"):
        envkit.pyfunc.load_model(model)
    monkeypatch.setenv("ENVKIT_DEPENDENCY_MISMATCH", "loud")
    with pytest.raises(UsageError, match="ignore, warn, error"):
        envkit.pyfunc.load_model(model)


def test_a_freshly_saved_model_has_no_mismatch(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model_importing("import yaml"))
    assert find_mismatches(tmp_path / "m") == []


# -- what cannot be checked is said, never skipped silently (audit B5, B3) ------------------------


def test_an_invalid_line_is_named_in_the_one_grouped_warning_at_load(tmp_path):
    model = _saved_with(tmp_path, "not-installed-pkg-zz==2.0")
    lines = (model / "requirements.txt").read_text().splitlines()
    (model / "requirements.txt").write_text("\n".join([*lines, "x!!"]))
    with pytest.warns(DependencyMismatchWarning) as record:
        envkit.pyfunc.load_model(model)
    assert len(record) == 1
    message = str(record[0].message)
    assert "not-installed-pkg-zz (current: uninstalled" in message
    assert (
        f" - not checked: invalid requirement in requirements.txt:{len(lines) + 1} 'x!!': "
        "Expected " in message
    )
    assert "    ^" not in message  # packaging's caret line is not carried along


def test_an_invalid_line_alone_still_warns(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model_importing())
    model = tmp_path / "m"
    (model / "requirements.txt").write_text("x!!")
    with pytest.warns(DependencyMismatchWarning, match="cannot all be checked:\n - not checked"):
        envkit.pyfunc.load_model(model)


def test_a_broken_python_env_yaml_is_not_checked_but_said(tmp_path):
    model = _saved_with(tmp_path, "not-installed-pkg-zz==2.0")
    (model / "python_env.yaml").write_text("python: [3.11\n")
    with pytest.warns(DependencyMismatchWarning) as record:
        envkit.pyfunc.load_model(model)
    message = str(record[0].message)
    assert "python_env.yaml is not valid YAML (line 2): " in message
    assert "not-installed-pkg-zz (current: uninstalled" in message  # requirements.txt still read


def test_the_error_policy_raises_one_line(tmp_path, monkeypatch):
    model = _saved_with(tmp_path, "not-installed-pkg-zz==2.0")
    lines = (model / "requirements.txt").read_text().splitlines()
    (model / "requirements.txt").write_text("\n".join([*lines, "other-missing-zz>=1"]))
    monkeypatch.setenv("ENVKIT_DEPENDENCY_MISMATCH", "error")
    with pytest.raises(DependencyMismatchError) as info:
        envkit.pyfunc.load_model(model)
    message = str(info.value)
    assert "\n" not in message
    assert (
        "not-installed-pkg-zz (current: uninstalled, required: not-installed-pkg-zz==2.0); "
        "other-missing-zz (current: uninstalled, required: other-missing-zz>=1)."
    ) in message
