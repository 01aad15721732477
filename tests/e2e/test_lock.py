"""envkit lock: resolves the model's requirements from the package index (pip-tools, uv)."""

from __future__ import annotations

import pytest
from capture_helpers import model_importing

import envkit.pyfunc
from envkit.cli import main
from envkit.deps.capture import RequirementWarning
from envkit.models import update_model_requirements

pytestmark = pytest.mark.slow


@pytest.fixture
def model(tmp_path):
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model_importing("import yaml"))
    return tmp_path / "m"


@pytest.mark.parametrize("tool", ["uv", "pip-tools"])
def test_lock_writes_a_hashed_transitive_lock(model, capsys, tool):
    from envkit.deps.lock import available_tools
    from envkit.errors import ModelFormatError
    from envkit.sandbox.spec import read_env_spec

    assert available_tools()[tool] is None  # both are in the dev/test extras
    code = main(["lock", str(model), "--tool", tool])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "requirements.lock" in captured.out
    text = (model / "requirements.lock").read_text()
    assert "--find-links" not in text and "--extra-index-url" not in text
    assert "pyyaml==" in text and "--hash=sha256:" in text
    assert "\nenvkit==" not in text  # envkit is installed from its own wheel, never resolved
    assert "packaging==" in text and "cloudpickle==" in text  # envkit's runtime, locked
    assert (model / "metadata" / "requirements.lock").read_text() == text
    from envkit.deps.recorded import read_recorded_environment

    lock = read_recorded_environment(model).lock
    assert lock is not None and any(line.startswith("pyyaml==") for line in lock.listed.lines)
    assert read_env_spec(model).source.endswith("requirements.lock")

    # requirements.txt edited after locking: the lock is refused, never silently used
    requirements = model / "requirements.txt"
    requirements.write_text(requirements.read_text() + "\nsix")
    with pytest.raises(ModelFormatError, match=r"requirements\.lock is out of date: "):
        read_env_spec(model)
    assert main(["deps", str(model)]) == 0
    assert "lock: requirements.lock -- requirements.lock is out of date" in capsys.readouterr().out
    assert main(["lock", str(model), "--tool", tool]) == 0
    capsys.readouterr()
    assert "six" in read_env_spec(model).requirement_map()


@pytest.mark.parametrize("tool", ["uv", "pip-tools"])
def test_a_lock_failure_names_the_requirement_the_resolver_could_not_satisfy(model, capsys, tool):
    with pytest.warns(RequirementWarning):  # (this environment has another pyyaml)
        update_model_requirements(model, "add", ["pyyaml==0.0.1"])
    assert main(["lock", str(model), "--tool", tool]) == 3
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: locking the requirements with {tool} failed: exited with code")
    assert "pyyaml==0.0.1" in err.lower()
    assert not (model / "requirements.lock").exists()
