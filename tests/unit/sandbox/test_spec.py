"""EnvSpec: reading a model's environment files, normalization, hashing, overrides, diffs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from envkit.errors import InvalidRequirementError, ModelFormatError, UsageError
from envkit.sandbox.spec import (
    EnvSpec,
    apply_overrides,
    canonical_requirement,
    normalize_requirements,
    read_env_spec,
)

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "mlflow-3.17.2"
SK_EXAMPLE = SAMPLES / "sk_example"


def _model(tmp_path: Path, *, requirements: str, python: str = "3.11.7") -> Path:
    (tmp_path / "python_env.yaml").write_text(
        f"python: {python}\nbuild_dependencies:\n- pip==23.2.1\n- setuptools==65.5.0\n- wheel\n"
        "dependencies:\n- -r requirements.txt\n"
    )
    (tmp_path / "requirements.txt").write_text(requirements)
    return tmp_path


def test_reads_an_mlflow_written_model(tmp_path):
    model = tmp_path / "m"
    shutil.copytree(SK_EXAMPLE, model)
    spec = read_env_spec(model)
    assert spec.python == "3.11.7"
    assert spec.requirements == (
        "mlflow==3.17.2",
        "numpy==2.4.6",
        "pandas==3.1.1",
        "scikit-learn==1.9.1",
        "scipy==1.17.1",
        "skops==0.16.0",
    )
    assert spec.build_dependencies == ("pip==23.2.1", "setuptools==65.5.0", "wheel")
    assert spec.source == "python_env.yaml + requirements.txt"
    conda = read_env_spec(model, env_manager="conda")
    assert conda.python == "3.11.7" and conda.requirements == spec.requirements
    assert conda.conda_dependencies == ("pip<=23.2.1",)
    assert conda.conda_channels == ("conda-forge",)
    assert conda.key != spec.key


def test_normalization_makes_equal_environments_equal():
    a = normalize_requirements(["Scikit_Learn>=1.0,<2", "numpy==2.0", "pandas"])
    b = normalize_requirements(["pandas", "numpy == 2.0", "scikit-learn<2,>=1.0"])
    assert a == b == ("numpy==2.0", "pandas", "scikit-learn<2,>=1.0")
    assert canonical_requirement("Foo[B,a]>=1; python_version >= '3.9'") == (
        'foo[a,b]>=1; python_version >= "3.9"'
    )
    assert EnvSpec("3.11.7", a).key == EnvSpec("3.11.7", b).key
    assert EnvSpec("3.11.7", a).key != EnvSpec("3.12.1", a).key


def test_lock_file_wins_over_requirements_txt(tmp_path):
    model = _model(tmp_path, requirements="numpy\npandas")
    (model / "requirements.lock").write_text(
        "# generated\nnumpy==2.4.6 \\\n    --hash=sha256:abc \\\n    --hash=sha256:def\n"
        "pandas==3.1.1 --hash=sha256:123\n"
    )
    spec = read_env_spec(model)
    assert spec.requirements == ("numpy==2.4.6", "pandas==3.1.1")
    assert spec.source == "python_env.yaml + requirements.lock"
    assert spec.hashes == (
        ("numpy==2.4.6", ("sha256:abc", "sha256:def")),
        ("pandas==3.1.1", ("sha256:123",)),
    )


def test_constraints_and_index_options_are_kept(tmp_path):
    model = _model(
        tmp_path,
        requirements="-c constraints.txt\n--extra-index-url https://example.invalid/simple\nnumpy",
    )
    (model / "constraints.txt").write_text("numpy<3")
    spec = read_env_spec(model)
    assert spec.requirements == ("numpy",)
    assert spec.constraints == ("numpy<3",)
    assert spec.options == ("--extra-index-url https://example.invalid/simple",)


def test_bad_environment_files_are_clear_errors(tmp_path):
    with pytest.raises(ModelFormatError, match="records no environment"):
        read_env_spec(tmp_path)
    model = _model(tmp_path, requirements="numpy\nnot a requirement!")
    with pytest.raises(InvalidRequirementError, match="requirements.txt:2"):
        read_env_spec(model)
    model = _model(tmp_path, requirements="-e ./src")
    with pytest.raises(InvalidRequirementError, match="editable"):
        read_env_spec(model)
    model = _model(tmp_path, requirements="numpy", python="three")
    with pytest.raises(InvalidRequirementError, match="expected a version"):
        read_env_spec(model)
    model = _model(tmp_path, requirements="-c ../outside.txt")
    with pytest.raises(ModelFormatError, match="outside the model directory"):
        read_env_spec(model)


def test_overrides_replace_or_add():
    result = apply_overrides(
        ("numpy==1.26.4", "pandas==2.2.0"), ["NumPy==2.0.0", "scipy>=1.10", "pandas==2.2.0"]
    )
    assert result.requirements == ("numpy==2.0.0", "pandas==2.2.0", "scipy>=1.10")
    assert result.notes == ["replaced numpy==1.26.4 with numpy==2.0.0", "added scipy>=1.10"]
    with pytest.raises(UsageError, match="invalid --override"):
        apply_overrides((), ["==1.0"])


def test_differences_read_like_a_changelog():
    old = EnvSpec("3.11.7", ("numpy==1.26.4", "pandas==2.2.0"), runner="envkit-0.1.0+a")
    new = EnvSpec("3.12.1", ("numpy==2.0.0", "pandas==2.2.0"), runner="envkit-0.1.0+a")
    assert new.differences(old) == [
        "python changed: 3.11.7 -> 3.12.1",
        "requirements changed: removed numpy==1.26.4; added numpy==2.0.0",
    ]
    assert EnvSpec.from_dict(new.to_dict()) == new
