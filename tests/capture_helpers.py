"""Helpers shared by the dependency tests (imported by name: tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def requirement_names(model_dir) -> set[str]:
    """Distribution names in a model's requirements.txt (option lines left out)."""
    from envkit.deps.requirements import requirement_name

    lines = Path(model_dir, "requirements.txt").read_text().splitlines()
    return {n for n in (requirement_name(line) for line in lines) if n}


def model_importing(*import_lines: str, where: str = "load_context") -> Any:
    """A PythonModel (pickled by value) whose ``where`` method runs ``import_lines``."""
    body = "\n".join(f"        {line}" for line in import_lines) or "        pass"
    predict = "        return model_input\n"
    if where == "predict":
        predict = body + "\n" + predict
        load = "        pass\n"
    else:
        load = body + "\n"
    code = (
        "import envkit.pyfunc\n"
        "class M(envkit.pyfunc.PythonModel):\n"
        "    def load_context(self, context):\n"
        f"{load}"
        "    def predict(self, context, model_input, params=None):\n"
        f"{predict}"
    )
    namespace: dict[str, Any] = {"__name__": "envkit_test_model_code"}
    exec(compile(code, "<test model>", "exec"), namespace)
    return namespace["M"]()


# MLflow 3.17.2's own files, copied into the repository (tests/data/mlflow-3.17.2).
SAMPLES = Path(__file__).resolve().parent / "data" / "mlflow-3.17.2"
