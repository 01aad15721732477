"""A tiny Keras 3 model, trained in the session (nothing downloaded): a ``keras.Sequential``
(Dense 4→8 relu, Dense 3 softmax) trained for two epochs on 48 seeded rows of four float32
features, on the backend Keras picks (TensorFlow unless ``KERAS_BACKEND`` says otherwise). Its
pyfunc takes an array (or a DataFrame) of four columns and returns three class probabilities.

envkit saves it with ``envkit.keras``, MLflow with ``mlflow.keras`` (the tensorflow flavor's
module, tests/flavor_models/tensorflow.py, saves it too). MLflow's virtualenv needs the same
TensorFlow and Keras: :data:`MLFLOW_LIBRARIES`."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

MLFLOW_LIBRARIES = ("tensorflow-cpu", "keras", "pandas", "numpy", "cloudpickle")
COLUMNS = ["f0", "f1", "f2", "f3"]


def features(n: int = 48) -> Any:
    """``n`` seeded rows of four float32 features in [0, 1)."""
    import numpy as np

    return np.random.default_rng(0).random((n, 4), dtype=np.float32)


def frame(n: int = 3) -> Any:
    import pandas as pd

    return pd.DataFrame(features()[:n], columns=COLUMNS)


def sequential() -> Any:
    """The keras.Sequential classifier (three classes), trained (seeded, deterministic on CPU)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    X = features()
    y = (X[:, 0] + X[:, 1] > X[:, 2] + 0.5).astype(np.int64) + (X[:, 3] > 0.7).astype(np.int64)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
         keras.layers.Dense(3, activation="softmax")]
    )  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    return model


def save_envkit(path: str | Path) -> None:
    """Train the sequential model and save it with envkit.keras, three rows as input example."""
    import envkit.keras

    envkit.keras.save_model(sequential(), path, input_example=features()[:3])


SOURCE = "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in (features, frame, sequential))

# MLflow saves with the requirements given (those installed there): its inference process would
# take longer to find the same ones, and lists keras only (not the backend it runs on).
MLFLOW_PINS = """
from importlib.metadata import version

pins = [f"{name}=={version(name)}" for name in ("tensorflow-cpu", "keras", "pandas")]
"""

MLFLOW_SAVE = f"""
import os, sys
from typing import Any

import mlflow.keras

{SOURCE}
{MLFLOW_PINS}
# mlflow.keras.save_model writes the input example before it creates the directory
os.makedirs(sys.argv[1])
mlflow.keras.save_model(sequential(), sys.argv[1], input_example=features()[:3],
                        pip_requirements=pins)
"""
