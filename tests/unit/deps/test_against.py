"""``envkit deps MODEL --check --against FILE``: the model's requirements against a target
environment described by a file (a pip freeze, a lock), without building anything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import envkit.pyfunc
from envkit.deps.against import check_against

pytestmark = pytest.mark.timeout(120)


class Echo(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m"
    envkit.pyfunc.save_model(path, python_model=Echo(), pip_requirements=[])
    # (written as a user edits it: the requirements are the test's, not this interpreter's)
    (path / "requirements.txt").write_text(
        "numpy>=1.26,<2\n"
        "pandas==2.2.3\n"
        "ektest-url @ https://example.invalid/ektest_url-1.0-py3-none-any.whl\n"
        "pywin32==306; sys_platform == 'win32'\n"
    )
    return path


def _freeze(tmp_path, text):
    target = tmp_path / "freeze.txt"
    target.write_text(text)
    return target


def test_each_requirement_is_satisfied_violated_lacking_or_not_applicable(model, tmp_path):
    target = _freeze(
        tmp_path,
        "numpy==2.0.1\nektest-url==1.0\ncloudpickle==3.1.1 --hash=sha256:" + "0" * 64 + "\n",
    )
    report = check_against(model, target)
    status = {row.name: (row.status, row.target) for row in report.rows}
    assert status["numpy"] == ("violated", "2.0.1")
    assert status["pandas"] == ("lacking", None)
    assert status["ektest-url"] == ("satisfied", "1.0")
    assert status["pywin32"][0] == "n/a"
    assert not report.ok and {r.name for r in report.failed} == {"numpy", "pandas"}


def test_the_cli_exit_codes_and_json(model, tmp_path):
    good = _freeze(tmp_path, "numpy==1.26.4\npandas==2.2.3\nektest-url==1.0\nenvkit==0.1.0\n")
    argv = [sys.executable, "-m", "envkit", "deps", str(model), "--check", "--against"]
    proc = subprocess.run([*argv, str(good)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the target satisfies the model's" in proc.stdout
    bad = _freeze(tmp_path, "numpy==2.0.1\n")
    proc = subprocess.run(
        [*argv, str(bad), "--format", "json"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["ok"] is False and data["target_distributions"] == 1
    proc = subprocess.run([*argv, str(tmp_path / "missing.txt")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no such file" in proc.stderr
