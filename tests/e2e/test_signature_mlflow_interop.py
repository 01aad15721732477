"""Signatures and input examples against real MLflow 3 (in its own virtualenv), both ways.

* ``infer_signature`` and the example files match what MLflow produces for the same data;
* signatures and examples MLflow wrote load in envkit identically;
* signatures and examples envkit wrote load in MLflow (``mlflow.models.Model.load``) equal to
  envkit's.

One MLflow subprocess per session does all MLflow-side work and reports JSON.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from interop_cases import data_cases, param_cases, signature_json_cases

from envkit.models import ModelSignature, infer_signature
from envkit.models.input_example import InputExample, load_input_example, save_input_example
from envkit.models.model import Model

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]

CASES_DIR = Path(__file__).resolve().parents[1]  # tests/, where interop_cases.py is

# Where envkit deliberately differs from MLflow 3.17.2 (with pandas 3):
# - missing values in DataFrame examples are written as JSON null; MLflow writes NaN (not
#   valid JSON) because pandas 3 string/float columns cannot hold None;
# - a pandas Series is accepted as an example (saved as a one-column DataFrame); MLflow refuses.
EXAMPLE_DEVIATIONS = {
    "df_mixed": "nan-as-null",
    "series_named": "series",
    "series_strings": "series",
}

MLFLOW_SIDE = """
import json, logging, sys, warnings
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from interop_cases import data_cases, param_cases, signature_json_cases
import mlflow
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.models.utils import _Example, _save_example

root = Path(sys.argv[2])
out = {"schemas": {}, "examples": {}, "params": {}, "read_envkit": {}, "reread_mlflow": {}}

def error(e):
    return {"error": f"{type(e).__name__}: {e}"}

def reserialize(model, path):
    loaded = model.load_input_example(str(path))
    return None if loaded is None else _Example(loaded).json_input_example

for name, data in data_cases().items():
    inputs = data[0] if isinstance(data, tuple) else data
    target = root / "mlflow_written" / name
    target.mkdir(parents=True)
    model = Model()
    model.add_flavor("python_function", loader_module="mlflow.pyfunc.model")
    try:
        signature = infer_signature(inputs)
        out["schemas"][name] = signature.to_dict()
        model.signature = signature
    except Exception as e:
        out["schemas"][name] = error(e)
    try:
        ex = _Example(data)
        out["examples"][name] = {
            "info": ex.info, "example": ex.json_input_example, "serving": ex.json_serving_input
        }
        _save_example(model, data, str(target))
    except Exception as e:
        out["examples"][name] = error(e)
    model.save(str(target / "MLmodel"))
    try:
        out["reread_mlflow"][name] = reserialize(Model.load(str(target)), target)
    except Exception as e:
        out["reread_mlflow"][name] = error(e)

for i, case in enumerate(signature_json_cases()):
    target = root / "mlflow_written" / f"sig_{i}"
    target.mkdir(parents=True)
    model = Model(signature=ModelSignature.from_dict(case))
    model.add_flavor("python_function", loader_module="mlflow.pyfunc.model")
    model.save(str(target / "MLmodel"))

for name, params in param_cases().items():
    try:
        out["params"][name] = infer_signature(params=params).to_dict()
    except Exception as e:
        out["params"][name] = error(e)

for path in sorted((root / "envkit_written").iterdir()):
    try:
        model = Model.load(str(path))
        result = {"signature": model.signature.to_dict() if model.signature else None}
        result["serving"] = model.get_serving_input(str(path))
    except Exception as e:
        result = error(e)
    else:
        try:
            result["example"] = reserialize(model, path)
        except Exception as e:
            result["example"] = error(e)
    out["read_envkit"][path.name] = result

(root / "mlflow_results.json").write_text(json.dumps(out))
"""


@pytest.fixture(scope="module")
def interop(mlflow_python, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("signature-interop")
    written = root / "envkit_written"
    for name, data in data_cases().items():
        target = written / name
        target.mkdir(parents=True)
        inputs = data[0] if isinstance(data, tuple) else data
        model = Model(flavors={"python_function": {"loader_module": "envkit.pyfunc.model"}})
        model.signature = infer_signature(inputs)
        model.saved_input_example_info = save_input_example(target, data)
        model.save(target)
    for i, case in enumerate(signature_json_cases()):
        target = written / f"sig_{i}"
        target.mkdir(parents=True)
        Model(flavors={"python_function": {}}, signature=ModelSignature.from_dict(case)).save(
            target
        )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(mlflow_python), "-c", textwrap.dedent(MLFLOW_SIDE), str(CASES_DIR), str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, json.loads((root / "mlflow_results.json").read_text())


DATA_NAMES = list(data_cases())


@pytest.mark.parametrize("name", DATA_NAMES)
def test_infer_signature_matches_mlflow(interop, name):
    data = data_cases()[name]
    inputs = data[0] if isinstance(data, tuple) else data
    assert infer_signature(inputs).to_dict() == interop[1]["schemas"][name]


@pytest.mark.parametrize("name", list(param_cases()))
def test_param_schemas_match_mlflow(interop, name):
    assert infer_signature(params=param_cases()[name]).to_dict() == interop[1]["params"][name]


def _nan_to_null(text: str | None) -> Any:
    def fix(x: Any) -> Any:
        if isinstance(x, float) and math.isnan(x):
            return None
        if isinstance(x, list):
            return [fix(v) for v in x]
        if isinstance(x, dict):
            return {k: fix(v) for k, v in x.items()}
        return x

    return fix(json.loads(text)) if text is not None else None


@pytest.mark.parametrize("name", DATA_NAMES)
def test_example_files_match_mlflow(interop, name):
    mlflow_side = interop[1]["examples"][name]
    ours = InputExample(data_cases()[name])
    deviation = EXAMPLE_DEVIATIONS.get(name)
    if deviation == "series":
        assert "error" in mlflow_side and "Series" in mlflow_side["error"]
        assert ours.info["type"] == "dataframe"
        return
    assert ours.info == mlflow_side["info"]
    if deviation == "nan-as-null":
        assert "NaN" in mlflow_side["example"] and "NaN" not in ours.json_input_example
        assert json.loads(ours.json_input_example) == _nan_to_null(mlflow_side["example"])
        assert json.loads(ours.json_serving_input) == _nan_to_null(mlflow_side["serving"])
        return
    assert ours.json_input_example == mlflow_side["example"]
    assert ours.json_serving_input == mlflow_side["serving"]


def _mlflow_dirs(root: Path) -> list[Path]:
    return sorted((root / "mlflow_written").iterdir())


def test_mlflow_written_signatures_load_identically(interop):
    root, results = interop
    import yaml

    for path in _mlflow_dirs(root):
        raw = yaml.safe_load((path / "MLmodel").read_text())
        signature = Model.load(path).signature
        if "signature" not in raw:
            assert signature is None, path.name
            continue
        assert signature.to_dict() == raw["signature"], path.name
        if path.name in results["schemas"]:
            data = data_cases()[path.name]
            inputs = data[0] if isinstance(data, tuple) else data
            assert signature == infer_signature(inputs), path.name
    for i, case in enumerate(signature_json_cases()):
        assert Model.load(root / "mlflow_written" / f"sig_{i}").signature == (
            ModelSignature.from_dict(case)
        )


@pytest.mark.parametrize("name", DATA_NAMES)
def test_mlflow_written_examples_load_like_ours(interop, name):
    root, results = interop
    if "error" in results["examples"][name]:
        assert EXAMPLE_DEVIATIONS.get(name) == "series"  # MLflow cannot save these at all
        return
    theirs_dir, ours_dir = root / "mlflow_written" / name, root / "envkit_written" / name
    theirs = load_input_example(theirs_dir, Model.load(theirs_dir).saved_input_example_info)
    ours = load_input_example(ours_dir, Model.load(ours_dir).saved_input_example_info)
    assert InputExample(theirs).json_input_example == InputExample(ours).json_input_example


@pytest.mark.parametrize("name", DATA_NAMES + [f"sig_{i}" for i in range(4)])
def test_envkit_written_models_load_in_mlflow(interop, name):
    root, results = interop
    read = results["read_envkit"][name]
    assert "error" not in read, read
    ours = Model.load(root / "envkit_written" / name)
    assert read["signature"] == ours.signature.to_dict()
    if name.startswith("sig_"):
        return
    serving = (root / "envkit_written" / name / "serving_input_example.json").read_text()
    assert read["serving"] == serving
    if "error" in results["examples"][name]:
        return  # MLflow has no example writer for this kind; it still reads ours (above)
    # MLflow reads our example file as it reads its own: to the same object (re-serialized by
    # MLflow here), or with the same error where MLflow cannot read back what it wrote.
    theirs = results["reread_mlflow"][name]
    if isinstance(theirs, dict) and "error" in theirs:
        assert read["example"]["error"].split(":")[0] == theirs["error"].split(":")[0]
        return
    assert _nan_to_null(read["example"]) == _nan_to_null(theirs)
