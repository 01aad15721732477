"""A tiny H2O model: a GLM (gaussian, no regularization) trained on thirty rows of two float
columns, y = 2a - b + 1 and a little noise; its pyfunc predicts a DataFrame (``predict``).

H2O runs in a JVM: :func:`save_envkit` starts a small local cluster (:data:`INIT`), or joins
the one at H2O's default address, and shuts down only one it started. The model records
:data:`INIT` as its ``h2o.init`` arguments, so that each load (envkit's sandbox, MLflow's
``models predict``) starts one small JVM of its own. MLflow needs h2o in its virtualenv:
:data:`MLFLOW_LIBRARIES` (``benchmarks/validate.py`` builds one with them)."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

INIT = {"max_mem_size": "512M", "nthreads": 1}
FEATURES = ["a", "b"]
MLFLOW_LIBRARIES = ("h2o", "pandas", "numpy")


def training_data() -> Any:
    """Thirty rows: the float features ``a`` and ``b`` and the target ``y``."""
    import pandas as pd

    a = [float(i) for i in range(30)]
    b = [float((i * 7) % 5) for i in range(30)]
    y = [2 * x - z + 1 + (i % 3) * 0.1 for i, (x, z) in enumerate(zip(a, b))]
    return pd.DataFrame({"a": a, "b": b, "y": y})


def glm(rows: Any) -> Any:
    """An H2OGeneralizedLinearEstimator trained on ``rows`` in the connected cluster."""
    import h2o
    from h2o.estimators import H2OGeneralizedLinearEstimator

    model = H2OGeneralizedLinearEstimator(lambda_=0, seed=1)
    model.train(x=["a", "b"], y="y", training_frame=h2o.H2OFrame(rows))
    return model


def save_envkit(path: str | Path) -> None:
    """Train the GLM and save it with envkit, the first three rows as input example."""
    import h2o

    import envkit.h2o

    h2o.init(**INIT, verbose=False)
    h2o.no_progress()
    try:
        rows = training_data()
        envkit.h2o.save_model(
            glm(rows), path, settings={"init": INIT}, input_example=rows[FEATURES].head(3)
        )
    finally:
        if h2o.connection().local_server is not None:
            h2o.cluster().shutdown()


_SOURCE = "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in (training_data, glm))

# The requirements are given (what MLflow infers, without its inference process and its JVM).
MLFLOW_SAVE = f"""
import sys
from importlib.metadata import version
from typing import Any

import h2o
import mlflow.h2o

{_SOURCE}

INIT = {INIT!r}
h2o.init(**INIT, verbose=False)
rows = training_data()
mlflow.h2o.save_model(
    glm(rows),
    sys.argv[1],
    settings={{"init": INIT}},
    input_example=rows[{FEATURES!r}].head(3),
    pip_requirements=[f"{{name}}=={{version(name)}}" for name in ("h2o", "pandas", "numpy")],
)
"""
