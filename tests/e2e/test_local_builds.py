"""A distribution installed as a local build (``1.0.0+cu121``, as PyTorch's CUDA wheels are) is
recorded with its label and where it came from, rebuilds from there, and a CUDA build validated
on a machine without an NVIDIA GPU is a warning, not a failure. The build is the test's own
wheel (``ektest-gpu``), served by a ``--find-links`` directory, as this machine serves torch's
CPU build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_wheels import LocalIndex, build_wheel

import envkit.pyfunc
from envkit.sandbox.checks import has_nvidia_gpu

pytestmark = pytest.mark.slow


MODEL_CODE = """
import envkit.models, envkit.pyfunc

class UsesGpuBuild(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        import ekgpu
        return [ekgpu.DEVICE for _ in model_input["x"]]

envkit.models.set_model(UsesGpuBuild())
"""


@pytest.mark.timeout(900)
def test_a_cuda_build_is_recorded_rebuilt_and_warned_about_without_a_gpu(
    tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
):
    import pandas as pd

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "ektest-gpu", "1.0.0+cu121", {"ekgpu/__init__.py": "DEVICE = 'cuda'\n"})
    site = LocalIndex(wheels).install(tmp_path / "site", "ektest-gpu==1.0.0+cu121")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))  # as pip.conf's find-links on this machine
    monkeypatch.delenv("UV_FIND_LINKS", raising=False)

    code = tmp_path / "gpu_model.py"
    code.write_text(MODEL_CODE)
    envkit.pyfunc.save_model(
        tmp_path / "m", python_model=str(code), input_example=pd.DataFrame({"x": [1]})
    )
    requirements = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert "ektest-gpu==1.0.0+cu121" in requirements
    provenance = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())
    assert provenance["find_links"] == [str(wheels)]

    proc = subprocess.run(
        [sys.executable, "-m", "envkit", "validate", str(tmp_path / "m"), "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "ENVKIT_HOME": str(shared_cache)},
        timeout=900,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["headline"]
    cuda = [w for w in report["warnings"] if "records a CUDA build" in w]
    if has_nvidia_gpu():
        assert cuda == []
    else:
        assert cuda == [
            "the model records a CUDA build (ektest-gpu==1.0.0+cu121) and this machine has no "
            "NVIDIA GPU: it ran on the CPU here, so this validation does not show that it runs "
            "on a GPU"
        ]
