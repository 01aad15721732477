"""A tiny XGBoost model: a native ``Booster`` (binary:logistic, three rounds) trained on twelve
rows of three float columns; its pyfunc predicts probabilities from a DataFrame (through a
DMatrix). ``classifier`` is the scikit-learn API counterpart (XGBClassifier)."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any


def training_data() -> tuple[Any, Any]:
    """(X, y): twelve rows of three float features (a DataFrame) and a 0/1 target."""
    import numpy as np
    import pandas as pd

    i = np.arange(12, dtype=np.float64)
    X = pd.DataFrame({"f0": np.sin(i), "f1": np.cos(1.7 * i), "f2": (i % 5) / 4.0})
    y = ((X["f0"] + X["f1"]) > 0).astype(np.int64)
    return X, y


def booster(X: Any, y: Any) -> Any:
    """xgboost.Booster, deterministic on one thread."""
    import xgboost as xgb

    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "seed": 0}
    return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=3)


def classifier(X: Any, y: Any) -> Any:
    """xgboost.XGBClassifier (the scikit-learn API)."""
    import xgboost as xgb

    return xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1, random_state=0).fit(X, y)


def save_envkit(path: str | Path) -> None:
    """Train the Booster and save it with envkit, the first three rows as input example."""
    import envkit.xgboost

    X, y = training_data()
    envkit.xgboost.save_model(booster(X, y), path, input_example=X.head(3))


_SOURCE = "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in (training_data, booster))

# MLflow would record both xgboost (the CUDA build, ~300 MB) and xgboost-cpu when xgboost-cpu
# provides the import, and runs a requirements inference process (~30 s): the requirements are
# given, as the distributions installed there.
MLFLOW_SAVE = f"""
import sys
from importlib.metadata import packages_distributions, version
from typing import Any

import mlflow.xgboost

{_SOURCE}

dist = packages_distributions()["xgboost"][0]
requirements = [f"{{name}}=={{version(name)}}" for name in (dist, "pandas", "numpy")]
X, y = training_data()
mlflow.xgboost.save_model(
    booster(X, y), sys.argv[1], input_example=X.head(3), pip_requirements=requirements
)
"""
