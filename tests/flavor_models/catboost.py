"""A tiny CatBoost model: a ``CatBoostClassifier`` (five iterations) trained on twelve rows of
three float columns; its pyfunc predicts 0/1 labels from a DataFrame."""

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
    """catboost.CatBoostClassifier, deterministic on one thread, writing no training files."""
    import catboost

    model = catboost.CatBoostClassifier(
        iterations=5, depth=2, thread_count=1, random_seed=0, verbose=False,
        allow_writing_files=False,
    )  # fmt: skip
    return model.fit(X, y)


def save_envkit(path: str | Path) -> None:
    """Train the classifier and save it with envkit, the first three rows as input example."""
    import envkit.catboost

    X, y = training_data()
    envkit.catboost.save_model(classifier(X, y), path, input_example=X.head(3))


_SOURCE = "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in (training_data, classifier))

# The requirements are given (what MLflow infers, without its ~30 s inference process).
MLFLOW_SAVE = f"""
import sys
from importlib.metadata import version
from typing import Any

import mlflow.catboost

{_SOURCE}

X, y = training_data()
mlflow.catboost.save_model(
    classifier(X, y),
    sys.argv[1],
    input_example=X.head(3),
    pip_requirements=[f"{{name}}=={{version(name)}}" for name in ("catboost", "pandas", "numpy")],
)
"""
