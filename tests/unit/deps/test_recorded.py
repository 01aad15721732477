"""RecordedEnvironment: the one reader of a model's environment files, and the one parser of
requirements files under it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from envkit.deps.recorded import (
    KIND_CONDA,
    KIND_PYTHON_ENV,
    KIND_REQUIREMENTS,
    RUNNING_PYTHON,
    EnvFileNames,
    input_digest,
    read_recorded_environment,
)
from envkit.deps.requirements import RequirementsReader, read_requirements_file
from envkit.errors import (
    InvalidRequirementError,
    ModelFormatError,
    NoRecordedEnvironmentError,
    StaleLockError,
    UnsafePathError,
)
from envkit.sandbox.spec import read_env_spec

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "mlflow-3.17.2"
SK_PINS = (
    "mlflow==3.17.2",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
    "skops==0.16.0",
)


@pytest.fixture
def sample(tmp_path) -> Path:
    """MLflow's sk_example: python_env.yaml, requirements.txt and conda.yaml."""
    shutil.copytree(SAMPLES / "sk_example", tmp_path / "m")
    return tmp_path / "m"


def _lock(model: Path, body: str, *, digest: str | None = None) -> None:
    header = f"# envkit-lock-input-sha256: {digest or input_digest(model)}\n"
    (model / "requirements.lock").write_text(header + body)


def test_python_env_and_requirements_txt_of_an_mlflow_model(sample):
    recorded = read_recorded_environment(sample)
    assert recorded.kind == KIND_PYTHON_ENV
    assert (recorded.python, recorded.python_from) == ("3.11.7", "python_env.yaml")
    assert recorded.files == ("python_env.yaml", "requirements.txt")
    assert recorded.source == "python_env.yaml + requirements.txt"
    assert recorded.requirements == recorded.lines == SK_PINS
    assert recorded.build_dependencies == ("pip==23.2.1", "setuptools==65.5.0", "wheel")
    assert recorded.options == recorded.constraints == ()
    assert recorded.conda_dependencies == ()  # conda.yaml did not win
    assert (recorded.has_lock_file, recorded.lock, recorded.stale_lock) == (False, None, None)


def test_conda_yaml_only(sample):
    (sample / "python_env.yaml").unlink()
    (sample / "requirements.txt").unlink()
    recorded = read_recorded_environment(sample)
    assert recorded.kind == KIND_CONDA
    assert (recorded.python, recorded.python_from) == ("3.11.7", "conda.yaml")
    assert recorded.source == "conda.yaml"
    assert recorded.requirements == SK_PINS
    assert recorded.conda_dependencies == ("pip<=23.2.1",)
    assert recorded.conda_channels == ("conda-forge",)
    # the conda manager reads conda.yaml whatever else there is
    assert read_recorded_environment(SAMPLES / "sk_example", conda=True).kind == KIND_CONDA


def test_an_invalid_conda_pip_line_is_named_by_its_position(sample):
    (sample / "python_env.yaml").unlink()
    (sample / "conda.yaml").write_text(
        "dependencies:\n- python=3.11.7\n- pip:\n  - numpy\n  - x!!\n"
    )
    with pytest.raises(InvalidRequirementError, match=r"pip requirement in conda\.yaml\[1\]") as e:
        read_recorded_environment(sample)
    assert (e.value.requirement, e.value.source) == ("x!!", "pip requirement in conda.yaml[1]")


def test_requirements_txt_only(sample):
    """The Python version is the MLmodel's, else the running interpreter's (as MLflow), and the
    source says so; validate builds it."""
    import platform

    for name in ("python_env.yaml", "conda.yaml"):
        (sample / name).unlink()
    recorded = read_recorded_environment(sample)
    running = platform.python_version()
    assert (recorded.kind, recorded.python, recorded.python_from) == (
        KIND_REQUIREMENTS,
        running,
        RUNNING_PYTHON,
    )
    assert recorded.source == f"running Python {running} (none recorded) + requirements.txt"
    assert recorded.requirements == SK_PINS
    spec = read_env_spec(sample)
    assert spec.python == running and spec.requirements == SK_PINS

    hinted = read_recorded_environment(sample, names=EnvFileNames(python_hint="3.11.7"))
    assert (hinted.python, hinted.python_from) == ("3.11.7", "MLmodel")
    assert hinted.source == "MLmodel python_version + requirements.txt"
    assert read_env_spec(sample, python_version_hint="3.11.7").requirements == SK_PINS


def test_nothing_recorded(tmp_path):
    with pytest.raises(NoRecordedEnvironmentError, match="records no environment"):
        read_recorded_environment(tmp_path)
    assert read_recorded_environment(tmp_path, lenient=True).kind is None


def test_a_current_lock_pins_with_hashes(sample):
    _lock(
        sample,
        "numpy==2.4.6 \\\n    --hash=sha256:abc \\\n    --hash=sha256:def\n    # via pandas\n"
        "pandas==3.1.1 --hash=sha256:123\n",
    )
    recorded = read_recorded_environment(sample)
    assert recorded.requirements == SK_PINS  # what requirements.txt lists (envkit deps)
    lock = recorded.locked()
    assert lock is not None and lock.listed.lines == ("numpy==2.4.6", "pandas==3.1.1")
    assert lock.hashes == (
        ("numpy==2.4.6", ("sha256:abc", "sha256:def")),
        ("pandas==3.1.1", ("sha256:123",)),
    )
    assert recorded.stale_lock is None and recorded.has_lock_file
    spec = read_env_spec(sample)
    assert spec.requirements == ("numpy==2.4.6", "pandas==3.1.1")
    assert spec.source == "python_env.yaml + requirements.lock"
    # the load-time check and `envkit lock` leave it unread
    assert read_recorded_environment(sample, with_lock=False).lock is None


def test_a_stale_lock_is_refused_for_validation_and_reported_to_deps(sample):
    _lock(sample, "numpy==2.4.6 --hash=sha256:abc\n", digest="0" * 64)
    recorded = read_recorded_environment(sample)  # envkit deps reads it and shows why
    assert recorded.lock is None
    assert recorded.stale_lock is not None
    assert recorded.stale_lock.startswith("requirements.lock is out of date: ")
    with pytest.raises(StaleLockError, match=r"requirements\.lock is out of date: "):
        recorded.locked()
    with pytest.raises(ModelFormatError, match=r"requirements\.lock is out of date: "):
        read_env_spec(sample)
    # a model whose conda.yaml wins never installed the lock: nothing to refuse
    (sample / "python_env.yaml").unlink()
    assert read_recorded_environment(sample).locked() is None


@pytest.mark.parametrize(
    ("requirements", "files"),
    [
        ("-r ../outside.txt", {}),
        ("-c ../outside.txt", {}),
        ("-r sub/more.txt", {"sub/more.txt": "-c ../../outside.txt"}),
    ],
    ids=["include", "constraint", "nested-include"],
)
def test_an_include_leaving_the_model_is_refused(sample, requirements, files):
    (sample.parent / "outside.txt").write_text("numpy")
    (sample / "requirements.txt").write_text(requirements)
    for name, text in files.items():
        (sample / name).parent.mkdir(exist_ok=True)
        (sample / name).write_text(text)
    with pytest.raises(UnsafePathError, match="outside the model directory"):
        read_recorded_environment(sample)
    lenient = read_recorded_environment(sample, lenient=True)
    assert len(lenient.problems) == 1 and "outside the model directory" in lenient.problems[0]


def test_includes_are_relative_to_the_file_that_names_them(sample):
    (sample / "requirements.txt").write_text("numpy  # pinned below\n-r sub/more.txt")
    (sample / "sub").mkdir()
    (sample / "sub" / "more.txt").write_text(
        "--extra-index-url https://example.invalid/simple\npandas \\\n  >=2\n-c constraints.txt\n"
    )
    (sample / "sub" / "constraints.txt").write_text("# only requirements\npandas<3\n")
    recorded = read_recorded_environment(sample)
    assert recorded.requirements == ("numpy", "pandas>=2")
    assert recorded.options == ("--extra-index-url https://example.invalid/simple",)
    assert recorded.constraints == ("pandas<3",)
    assert recorded.listed.constraint_files == ((sample / "sub" / "constraints.txt").resolve(),)
    assert recorded.lines[-1] == "-c constraints.txt"  # as listed (envkit deps shows it)


def test_a_missing_file_named_by_python_env_yaml(sample):
    (sample / "requirements.txt").unlink()
    with pytest.raises(ModelFormatError, match=r"requirements\.txt, which python_env\.yaml names"):
        read_recorded_environment(sample)


def test_lenient_reading_lists_problems_and_reads_the_rest(sample):
    (sample / "requirements.txt").write_text("numpy\nx!!\n--frobnicate\n-c missing.txt")
    recorded = read_recorded_environment(sample, lenient=True)
    assert recorded.requirements == ("numpy",)
    assert [p.split(" '", 1)[0] for p in recorded.problems] == [
        "invalid requirement in requirements.txt:2",
        "invalid requirement in requirements.txt:3",
        f"constraints file {(sample / 'missing.txt').resolve()} (from requirements.txt:4) "
        "does not exist",
    ]
    # a broken python_env.yaml: what requirements.txt lists is still read
    (sample / "python_env.yaml").write_text("python: [3.11\n")
    (sample / "requirements.txt").write_text("numpy")
    broken = read_recorded_environment(sample, lenient=True)
    assert (broken.python, broken.requirements) == (None, ("numpy",))
    assert "python_env.yaml is not valid YAML (line 2)" in broken.problems[0]


def test_the_flavor_names_the_environment_files(sample):
    (sample / "python_env.yaml").rename(sample / "env.yaml")
    recorded = read_recorded_environment(sample, names=EnvFileNames(python_env="env.yaml"))
    assert recorded.kind == KIND_PYTHON_ENV and recorded.source == "env.yaml + requirements.txt"
    with pytest.raises(UnsafePathError):
        read_recorded_environment(sample, names=EnvFileNames(conda="../../conda.yaml"))


def test_the_parser_refuses_unknown_options_and_keeps_user_labels(tmp_path):
    path = tmp_path / "reqs.txt"
    path.write_text("numpy\n--frobnicate\n")
    with pytest.raises(InvalidRequirementError, match="unknown pip option '--frobnicate'") as e:
        read_requirements_file(path)
    assert (e.value.requirement, e.value.source) == ("--frobnicate", "requirement in reqs.txt:2")
    reader = RequirementsReader(label="line", problems=[])
    reader.read_file(path)
    assert reader.problems == [
        "invalid line in reqs.txt:2 '--frobnicate': unknown pip option '--frobnicate'"
    ]
