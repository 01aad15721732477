"""pip_requirements / extra_pip_requirements / constraints: validated before anything is
written, merged with what capture infers (the user's pin wins, with a warning)."""

from __future__ import annotations

import json

import pytest
import yaml
from capture_helpers import model_importing, requirement_names

import envkit.pyfunc
import envkit.sklearn
from envkit.deps.capture import RequirementWarning, check_user_requirements
from envkit.errors import InvalidRequirementError, UsageError

pytestmark = pytest.mark.capture  # these test the capture subprocess itself


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


# -- pip_requirements still records what loading the model needs (audit A1) ----------------------


def _provenance_by_name(model_dir) -> dict:
    data = json.loads((model_dir / "requirements.provenance.json").read_text())
    return {r["name"]: r for r in data["requirements"] if r.get("name")}


def test_pip_requirements_always_get_the_running_envkit_and_what_enforcement_needs(tmp_path):
    """The audit's repro: the model loaded from its own requirements.txt lacked envkit (its
    loader module) and pandas (list input becomes a DataFrame under a signature)."""
    from importlib.metadata import version

    from envkit import __version__

    model = model_importing("import yaml", "import PIL.Image", where="predict")
    envkit.pyfunc.save_model(  # no warning: cloudpickle comes with envkit itself
        tmp_path / "m",
        python_model=model,
        input_example=["x"],
        pip_requirements=["pyyaml", "pillow"],
    )
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert lines[0] == f"envkit=={__version__}"
    assert set(lines) == {
        f"envkit=={__version__}",
        f"numpy=={version('numpy')}",
        f"pandas=={version('pandas')}",
        "pyyaml",
        "pillow",
    }
    records = _provenance_by_name(tmp_path / "m")
    assert records["envkit"]["source"] == "flavor"
    for name in ("pandas", "numpy"):
        assert records[name]["source"] == "envkit"
        assert "signature" in records[name]["note"]
    assert records["pyyaml"]["source"] == "user"
    conda = yaml.safe_load((tmp_path / "m" / "conda.yaml").read_text())
    assert conda["dependencies"][-1]["pip"] == lines


def test_without_a_signature_only_envkit_is_added(tmp_path):
    envkit.pyfunc.save_model(
        tmp_path / "m", python_model=model_importing(), pip_requirements=["pyyaml"]
    )
    from envkit import __version__

    assert (tmp_path / "m" / "requirements.txt").read_text() == f"envkit=={__version__}\npyyaml"


def test_a_users_envkit_pin_is_kept_with_a_warning_when_it_excludes_the_running_one(tmp_path):
    with pytest.warns(RequirementWarning, match=r"'envkit==0\.0\.1' excludes the running envkit"):
        envkit.pyfunc.save_model(
            tmp_path / "m", python_model=model_importing(), pip_requirements=["envkit==0.0.1"]
        )
    assert (tmp_path / "m" / "requirements.txt").read_text() == "envkit==0.0.1"


def test_a_users_conflicting_pandas_pin_wins_with_a_warning(tmp_path):
    from importlib.metadata import version

    with pytest.warns(RequirementWarning, match=r"'pandas<1' does not allow the installed pandas"):
        envkit.pyfunc.save_model(
            tmp_path / "m",
            python_model=model_importing(),
            input_example=["x"],
            pip_requirements=["pandas<1"],
        )
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert "pandas<1" in lines and f"numpy=={version('numpy')}" in lines
    assert not any(line.startswith("pandas==") for line in lines)


def test_a_flavor_library_missing_from_pip_requirements_is_a_warning_not_added(
    tmp_path, iris, iris_pipeline
):
    X, _ = iris
    with pytest.warns(RequirementWarning, match=r"does not list scikit-learn, skops,") as record:
        envkit.sklearn.save_model(
            iris_pipeline,
            tmp_path / "m",
            input_example=X.head(2),
            serialization_format="skops",
            pip_requirements=["pandas"],
        )
    assert len(record) == 1
    assert "cloudpickle" not in str(record[0].message)  # envkit itself depends on it
    assert requirement_names(tmp_path / "m") == {"envkit", "pandas", "numpy"}


def test_a_signature_without_an_example_still_records_pandas_and_numpy(tmp_path):
    """Inference sees no predict without an input example, but enforcement will run."""
    from envkit.models import infer_signature

    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=model_importing(),
        signature=infer_signature(["a", "b"], ["a", "b"]),
    )
    assert requirement_names(tmp_path / "m") == {"envkit", "cloudpickle", "pandas", "numpy"}
    assert _provenance_by_name(tmp_path / "m")["pandas"]["source"] == "envkit"


def test_an_invalid_line_is_named_in_one_line():
    """packaging's message repeats the line with a caret under it; only its first line stays."""
    for bad in (["numpy=="], ["not valid!!"]):
        with pytest.raises(InvalidRequirementError) as info:
            check_user_requirements(bad, None)
        assert "\n" not in str(info.value)
        assert str(info.value).startswith(f"invalid requirement pip_requirements[0] {bad[0]!r}: ")


def test_credentials_in_a_user_index_url_are_warned_about_and_kept_out_of_the_provenance(
    tmp_path, capsys
):
    from envkit.cli import main

    secret_line = "--extra-index-url https://bob:hunter2pw@idx.example/simple"
    with pytest.warns(RequirementWarning, match=r"carries a user name or password") as record:
        envkit.pyfunc.save_model(
            tmp_path / "m", python_model=model_importing(), extra_pip_requirements=[secret_line]
        )
    assert all("hunter2pw" not in str(w.message) for w in record)
    # written as the user gave it (the installer needs it), but not repeated anywhere else
    assert secret_line in (tmp_path / "m" / "requirements.txt").read_text()
    provenance = (tmp_path / "m" / "requirements.provenance.json").read_text()
    assert "hunter2pw" not in provenance and "https://idx.example/simple" in provenance
    assert main(["deps", str(tmp_path / "m"), "--format", "json"]) == 0
    assert main(["deps", str(tmp_path / "m")]) == 0
    assert "hunter2pw" not in capsys.readouterr().out

    # ${VARIABLES}, which pip and uv expand at install time, are what the warning recommends
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RequirementWarning)
        envkit.pyfunc.save_model(
            tmp_path / "v",
            python_model=model_importing(),
            extra_pip_requirements=["--extra-index-url https://${U}:${P}@idx.example/simple"],
        )
