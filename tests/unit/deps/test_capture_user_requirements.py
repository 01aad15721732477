"""pip_requirements / extra_pip_requirements / constraints: validated before anything is
written, merged with what capture infers (the user's pin wins, with a warning)."""

from __future__ import annotations

import json

import pytest
from capture_helpers import model_importing, requirement_names

import envkit.pyfunc
from envkit.deps.capture import RequirementWarning, check_user_requirements
from envkit.errors import InvalidRequirementError, UsageError


def test_lists_are_parsed_and_normalized():
    user = check_user_requirements(None, ["numpy >= 1.0", "# a comment", "", "pandas"])
    assert user.mode == "extra"
    assert user.requirements == ["numpy>=1.0", "pandas"]
    assert check_user_requirements(["scikit-learn==1.0"], None).mode == "replace"
    assert check_user_requirements(None, None).mode is None


def test_an_invalid_line_in_a_list_names_its_position():
    with pytest.raises(InvalidRequirementError, match=r"extra_pip_requirements\[1\] 'numpy=='"):
        check_user_requirements(None, ["pandas", "numpy=="])


def test_an_invalid_line_in_a_file_names_the_file_and_line(tmp_path):
    (tmp_path / "reqs.txt").write_text("pandas\n# ok\nnot a requirement!\n")
    with pytest.raises(InvalidRequirementError, match=r"reqs\.txt:3 'not a requirement!'"):
        check_user_requirements(tmp_path / "reqs.txt", None)


def test_includes_and_constraints_are_read_relative_to_their_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.txt").write_text("pandas\n-c pins.txt\n")
    (tmp_path / "sub" / "pins.txt").write_text("numpy<3\npandas<4 # comment\n")
    (tmp_path / "reqs.txt").write_text("-r sub/base.txt\nscikit-learn \\\n  >=1.0\n")
    user = check_user_requirements(str(tmp_path / "reqs.txt"), None)
    assert user.requirements == ["pandas", "scikit-learn>=1.0"]
    assert user.constraints == ["numpy<3", "pandas<4"]


def test_a_missing_constraints_file_is_named(tmp_path):
    with pytest.raises(InvalidRequirementError, match=r"constraints file .*nope\.txt.* not exist"):
        check_user_requirements(None, ["pandas", f"-c {tmp_path / 'nope.txt'}"])


def test_a_missing_requirements_file_is_named(tmp_path):
    with pytest.raises(InvalidRequirementError, match=r"requirements file .*missing\.txt"):
        check_user_requirements(tmp_path / "missing.txt", None)


def test_a_requirement_given_as_a_string_gets_a_hint():
    with pytest.raises(InvalidRequirementError, match=r"pass a list: pip_requirements=\["):
        check_user_requirements("scikit-learn==1.0", None)


def test_unknown_options_and_non_strings_are_refused():
    with pytest.raises(InvalidRequirementError, match="unknown pip option '--frobnicate'"):
        check_user_requirements(None, ["--frobnicate"])
    with pytest.raises(InvalidRequirementError, match=r"\[0\] must be a string"):
        check_user_requirements(None, [3])
    with pytest.raises(UsageError, match="not both"):
        check_user_requirements(["a"], ["b"])


def test_a_bad_line_at_save_time_writes_nothing(tmp_path):
    with pytest.raises(InvalidRequirementError, match="numpy=>>1"):
        envkit.pyfunc.save_model(
            tmp_path / "m", python_model=model_importing(), extra_pip_requirements=["numpy=>>1"]
        )
    assert list(tmp_path.iterdir()) == []


def test_pip_requirements_replace_inference(tmp_path):
    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=model_importing("import yaml"),
        pip_requirements=["envkit", "pyyaml>=5"],
    )
    assert (tmp_path / "m" / "requirements.txt").read_text() == "envkit\npyyaml>=5"
    data = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())
    assert data["capture"]["status"] == "skipped"
    assert {r["source"] for r in data["requirements"]} == {"user"}


def test_extra_requirements_are_added_and_constraints_copied(tmp_path):
    (tmp_path / "pins.txt").write_text("pyyaml<99\n")
    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=model_importing("import yaml"),
        extra_pip_requirements=["six", f"-c {tmp_path / 'pins.txt'}"],
    )
    model = tmp_path / "m"
    lines = (model / "requirements.txt").read_text().splitlines()
    assert lines[0].startswith("envkit==")
    assert lines[-2:] == ["six", "-c constraints.txt"]
    assert requirement_names(model) == {"envkit", "cloudpickle", "pyyaml", "six"}
    assert (model / "constraints.txt").read_text() == "pyyaml<99"
    assert (model / "metadata" / "constraints.txt").read_text() == "pyyaml<99"
    assert (model / "metadata" / "requirements.txt").read_text() == "\n".join(lines)


def test_a_conflicting_user_pin_wins_with_a_warning(tmp_path):
    with pytest.warns(RequirementWarning, match=r"'pyyaml<1' replaces the inferred 'pyyaml=="):
        envkit.pyfunc.save_model(
            tmp_path / "m",
            python_model=model_importing("import yaml"),
            extra_pip_requirements=["pyyaml<1"],
        )
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert "pyyaml<1" in lines
    assert not any(line.startswith("pyyaml==") for line in lines)


def test_a_compatible_user_requirement_replaces_the_pin_silently(tmp_path):
    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=model_importing("import yaml"),
        extra_pip_requirements=["PyYAML>=5"],
    )
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert "PyYAML>=5" in lines
    assert not any(line.startswith("pyyaml") for line in lines)


def test_an_unreadable_requirements_file_is_named(tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00pandas")
    with pytest.raises(InvalidRequirementError, match=r"binary\.txt is not UTF-8 text"):
        check_user_requirements(None, tmp_path / "binary.txt")
    (tmp_path / "adir").mkdir()
    with pytest.raises(InvalidRequirementError, match="is a directory"):
        check_user_requirements(tmp_path / "adir", None)
