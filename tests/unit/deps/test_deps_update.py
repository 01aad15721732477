"""update_model_requirements and get_model_dependencies: every file changes together."""

from __future__ import annotations

import json
import warnings

import pytest
import yaml
from capture_helpers import SAMPLES, model_importing

import envkit.pyfunc
from envkit.deps.capture import RequirementWarning
from envkit.errors import InvalidRequirementError, ModelFormatError, UsageError
from envkit.models import update_model_requirements


@pytest.fixture
def model(tmp_path):
    from importlib.metadata import version

    envkit.pyfunc.save_model(
        tmp_path / "m",
        python_model=model_importing("import yaml"),
        extra_pip_requirements=[f"pyyaml=={version('pyyaml')}"],
    )
    return tmp_path / "m"


def _state(model):
    reqs = (model / "requirements.txt").read_text().splitlines()
    conda = yaml.safe_load((model / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    prov = json.loads((model / "requirements.provenance.json").read_text())
    return reqs, pip, [r["requirement"] for r in prov["requirements"]]


def test_add_overwrites_or_appends_everywhere(model):
    update_model_requirements(model, "add", ["pyyaml>=5", "not-installed-pkg-zz==1.17.0"])
    reqs, pip, prov = _state(model)
    assert reqs == pip == prov
    assert "pyyaml>=5" in reqs and "not-installed-pkg-zz==1.17.0" in reqs
    assert not any(r.startswith("pyyaml==") for r in reqs)
    assert reqs.index("pyyaml>=5") < reqs.index("not-installed-pkg-zz==1.17.0")
    assert (model / "metadata" / "requirements.txt").read_text() == "\n".join(reqs)
    assert (model / "metadata" / "conda.yaml").read_text() == (model / "conda.yaml").read_text()
    data = json.loads((model / "requirements.provenance.json").read_text())
    added = next(
        r for r in data["requirements"] if r["requirement"] == "not-installed-pkg-zz==1.17.0"
    )
    assert added["source"] == "user"


def test_remove_ignores_specifiers_and_warns_about_missing_names(model):
    before = _state(model)
    with pytest.warns(RequirementWarning, match=r"^never-there, also-absent: not among") as record:
        update_model_requirements(model, "remove", ["PyYAML<1", "never-there", "also-absent"])
    assert len(record) == 1  # once, not once per file
    reqs, pip, prov = _state(model)
    assert reqs == pip == prov
    assert not any(r.lower().startswith("pyyaml") for r in reqs)
    assert [r for r in before[0] if not r.startswith("pyyaml")] == reqs
    assert (model / "metadata" / "requirements.txt").read_text() == "\n".join(reqs)


def test_adding_a_version_this_environment_lacks_warns(model):
    from importlib.metadata import version

    installed = version("pyyaml")
    older = "pyyaml==5.0.0" if installed != "5.0.0" else "pyyaml==5.1.0"
    with pytest.warns(RequirementWarning, match=rf"'{older}' \(installed: pyyaml {installed}\)"):
        update_model_requirements(model, "add", [older])
    assert older in _state(model)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # satisfied (or not installed at all): nothing to say
        update_model_requirements(model, "add", [f"pyyaml=={installed}", "not-installed-zz==1"])


def test_an_invalid_requirement_changes_nothing(model):
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    with pytest.raises(InvalidRequirementError, match=r"requirement_list\[1\]") as info:
        update_model_requirements(model, "add", ["six", "bad req!!"])
    assert "\n" not in str(info.value)  # not packaging's caret under the line
    with pytest.raises(UsageError, match="'add' or 'remove'"):
        update_model_requirements(model, "replace", ["six"])
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before


def test_a_broken_conda_yaml_is_named_in_one_line(model):
    (model / "conda.yaml").write_text("dependencies: [\n")
    with pytest.raises(ModelFormatError, match=r"conda\.yaml is not valid YAML \(line 2\): ") as e:
        update_model_requirements(model, "add", ["six"])
    assert "\n" not in str(e.value)


def test_a_stale_lock_is_removed_with_a_warning(model):
    (model / "requirements.lock").write_text("pyyaml==6.0 --hash=sha256:00\n")
    with pytest.warns(UserWarning, match="envkit lock"):
        update_model_requirements(model, "add", ["six"])
    assert not (model / "requirements.lock").exists()
    assert not (model / "metadata" / "requirements.lock").exists()


def test_a_model_mlflow_wrote_can_be_updated(tmp_path):
    import shutil

    shutil.copytree(SAMPLES / "sk_infer", tmp_path / "sk")
    from importlib.metadata import version

    skops = f"skops=={version('skops')}"
    update_model_requirements(tmp_path / "sk", "add", [skops])
    reqs = (tmp_path / "sk" / "requirements.txt").read_text().splitlines()
    assert reqs[-1] == skops and len(reqs) == 6
    conda = yaml.safe_load((tmp_path / "sk" / "conda.yaml").read_text())
    assert conda["name"] == "mlflow-env"
    assert conda["dependencies"][-1]["pip"] == reqs


def test_get_model_dependencies(model):
    pip = envkit.pyfunc.get_model_dependencies(model)
    assert pip == str(model / "requirements.txt")
    conda = envkit.pyfunc.get_model_dependencies(str(model), format="conda")
    assert conda == str(model / "conda.yaml")
    with pytest.raises(UsageError, match="'pip' or 'conda'"):
        envkit.pyfunc.get_model_dependencies(model, format="poetry")
    (model / "conda.yaml").unlink()
    with pytest.raises(ModelFormatError, match="no conda.yaml"):
        envkit.pyfunc.get_model_dependencies(model, format="conda")
