"""A model that needs the network at predict time (a hub download, here a fetch of PyPI's
simple index, the one remote host this machine reaches) fails validate with one line that says
so: the runner's audit hook records the hosts the model reached for (data, not the error's
wording), and validate runs the model with no network. With --no-contain it runs, with a
warning that a deployment without network would differ."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FETCHING_MODEL = """
import urllib.request

import envkit.models, envkit.pyfunc

class FetchesAtPredict(envkit.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        # as a model that downloads its tokenizer from a hub on first use
        with urllib.request.urlopen("https://pypi.org/simple/six/", timeout=20) as page:
            size = len(page.read(64))
        return [size for _ in model_input["x"]]

envkit.models.set_model(FetchesAtPredict())
"""


@pytest.fixture(scope="module")
def fetching_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pandas as pd

    import envkit.pyfunc

    root = tmp_path_factory.mktemp("fetching")
    code = root / "fetching.py"
    code.write_text(FETCHING_MODEL)
    envkit.pyfunc.save_model(
        root / "m", python_model=str(code), input_example=pd.DataFrame({"x": [1]})
    )
    return root / "m"


def _validate(model: Path, home: Path, *options: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "envkit", "validate", str(model), "--format", "json", *options],
        capture_output=True,
        text=True,
        env={**os.environ, "ENVKIT_HOME": str(home)},
        timeout=900,
    )
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.timeout(900)
def test_a_model_that_fetches_at_predict_fails_validate_saying_so(fetching_model, shared_cache):
    code, report = _validate(fetching_model, shared_cache)
    if not report["containment"]["network"]["held"]:
        pytest.skip(f"no network namespace here: {report['containment']['network']['detail']}")
    assert code == 1, report["headline"]
    assert report["error"]["kind"] == "network"
    assert report["error"]["stage"] == "predict"
    assert {"stage": "predict", "host": "pypi.org"} in report["network"]
    assert report["headline"].startswith(
        "FAILED: predict failed after the model tried to reach the network (pypi.org): "
        "validate runs it with no network"
    )
    assert "\n" not in report["headline"]


@pytest.mark.timeout(900)
def test_with_no_contain_it_runs_and_the_network_use_is_a_warning(fetching_model, shared_cache):
    code, report = _validate(fetching_model, shared_cache, "--no-contain")
    assert code == 0, report["headline"]
    assert report["output"]["shape"] == [1]
    assert (
        "the model reached the network (pypi.org) while it ran: a deployment with no network "
        "would differ (validate without --no-contain runs it with none)"
    ) in report["warnings"]
