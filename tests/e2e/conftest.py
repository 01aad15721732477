"""Sandbox fixtures: tiny models written with envkit (and MLflow), and environment caches.

Where isolation matters (counting builds, interrupted builds, failures) each test gets its own
cache root. Where sharing is the point, ``shared_cache`` is one root for the whole session,
shared by all pytest-xdist workers (the cache's file lock makes them build each spec once).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

# What the small test models need at predict time besides envkit (schema enforcement and
# input parsing use pandas/numpy), pinned to this interpreter's versions so that uv installs
# them from its cache.
RUNTIME_PINS = [f"pandas=={version('pandas')}", f"numpy=={version('numpy')}"]


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    """A fresh, private environment cache for one test."""
    return tmp_path / "envkit-home"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment cache for the session, shared by every xdist worker."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "envkit-shared-home"
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_code_model(
    root: Path,
    name: str,
    predict: str,
    *,
    requirements: list[str],
    input_example=None,
    stream: str | None = None,
) -> Path:
    """Save a models-from-code pyfunc whose ``predict`` body is ``predict`` (and, with
    ``stream``, a ``predict_stream`` body)."""
    import envkit.pyfunc

    methods = "    def predict(self, context, model_input, params=None):\n"
    methods += textwrap.indent(textwrap.dedent(predict).strip(), " " * 8) + "\n"
    if stream is not None:
        methods += "\n    def predict_stream(self, context, model_input, params=None):\n"
        methods += textwrap.indent(textwrap.dedent(stream).strip(), " " * 8) + "\n"
    code = root / f"{name}_code.py"
    code.write_text(
        "import envkit.models\nimport envkit.pyfunc\n\n\n"
        "class Model(envkit.pyfunc.PythonModel):\n"
        + methods
        + "\n\nenvkit.models.set_model(Model())\n",
        encoding="utf-8",
    )
    path = root / name
    envkit.pyfunc.save_model(
        path,
        python_model=str(code),
        input_example=input_example,
        pip_requirements=requirements,
        streamable=True if stream is not None else None,
    )
    return path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def double_model(models_dir: Path) -> Path:
    """A tiny model: doubles a list of numbers; input example [1, 2, 3]."""
    return write_code_model(
        models_dir,
        "double",
        """
        # The list arrives as a one-column DataFrame (the signature has one column spec).
        values = model_input.iloc[:, 0] if hasattr(model_input, "iloc") else model_input
        return [int(v) * 2 for v in values]
        """,
        requirements=RUNTIME_PINS,
        input_example=[1, 2, 3],
    )


@pytest.fixture(scope="session")
def streaming_model(models_dir: Path) -> Path:
    """predict returns the input upper-cased; predict_stream yields its characters."""
    return write_code_model(
        models_dir,
        "streaming",
        "return model_input.upper() if isinstance(model_input, str) else model_input",
        stream="yield from list(str(model_input))",
        requirements=RUNTIME_PINS,
        input_example="abc",
    )


@pytest.fixture(scope="session")
def payload(models_dir: Path) -> Path:
    """A serving payload for the models saved without an input example (saving with one
    would run them: they raise or hang)."""
    path = models_dir / "payload.json"
    path.write_text('{"inputs": [1, 2, 3]}', encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def raising_model(models_dir: Path) -> Path:
    return write_code_model(
        models_dir,
        "raising",
        "raise ValueError('the model is broken: feature 7 is missing')",
        requirements=RUNTIME_PINS,
    )


@pytest.fixture(scope="session")
def hanging_model(models_dir: Path) -> Path:
    return write_code_model(
        models_dir,
        "hanging",
        "import time\ntime.sleep(600)\nreturn model_input",
        requirements=RUNTIME_PINS,
    )


@pytest.fixture(scope="session")
def undeclared_import_model(models_dir: Path) -> Path:
    """Imports scikit-learn (installed here) without listing it in its requirements."""
    return write_code_model(
        models_dir,
        "undeclared",
        "import sklearn\nreturn [sklearn.__version__ for _ in model_input]",
        requirements=RUNTIME_PINS,
        input_example=[1, 2, 3],
    )


@pytest.fixture(scope="session")
def iris_model(models_dir: Path, iris, iris_pipeline) -> Path:
    """The iris pipeline saved with envkit.sklearn, requirements as captured."""
    import envkit.sklearn

    X, _ = iris
    path = models_dir / "iris"
    envkit.sklearn.save_model(iris_pipeline, path, input_example=X.head(3))
    return path


@pytest.fixture(scope="session")
def mlflow_iris_model(mlflow_python: Path, models_dir: Path) -> Path:
    """The iris pipeline saved by real MLflow (its requirements include mlflow)."""
    path = models_dir / "mlflow_iris"
    script = textwrap.dedent(
        f"""
        import mlflow.sklearn
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, y = load_iris(return_X_y=True, as_frame=True)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
        mlflow.sklearn.save_model(model, {str(path)!r}, input_example=X.head(3))
        """
    )
    proc = subprocess.run(
        [str(mlflow_python), "-c", script], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path
