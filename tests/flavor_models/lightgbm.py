"""A tiny LightGBM model: an ``LGBMClassifier`` (the scikit-learn API, saved with skops as
MLflow 3 does) trained on twelve rows of three float columns; its pyfunc predicts 0/1 labels
from a DataFrame. ``booster`` is the native counterpart (lightgbm.Booster)."""

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


def classifier(X: Any, y: Any) -> Any:
    """lightgbm.LGBMClassifier, deterministic on one thread."""
    import lightgbm as lgb

    model = lgb.LGBMClassifier(
        n_estimators=3, min_child_samples=2, n_jobs=1, random_state=0, verbose=-1
    )
    return model.fit(X, y)


def booster(X: Any, y: Any) -> Any:
    """lightgbm.Booster (binary objective: its predict gives probabilities)."""
    import lightgbm as lgb

    params = {"objective": "binary", "min_data_in_leaf": 2, "num_threads": 1, "verbose": -1}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=3)


def save_envkit(path: str | Path) -> None:
    """Train the classifier and save it with envkit, the first three rows as input example."""
    import envkit.lightgbm

    X, y = training_data()
    envkit.lightgbm.save_model(classifier(X, y), path, input_example=X.head(3))


_SOURCE = "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in (training_data, classifier))

# The requirements are given (what MLflow infers, without its ~30 s inference process).
MLFLOW_SAVE = f"""
import sys
from importlib.metadata import version
from typing import Any

import mlflow.lightgbm

{_SOURCE}

names = ("lightgbm", "scikit-learn", "skops", "pandas", "numpy")
X, y = training_data()
mlflow.lightgbm.save_model(
    classifier(X, y),
    sys.argv[1],
    input_example=X.head(3),
    pip_requirements=[f"{{name}}=={{version(name)}}" for name in names],
)
"""
