"""A tiny ``tf.Module`` for the tensorflow flavor: ``Scaler``, whose ``__call__`` is a
``tf.function`` with a fixed input signature (``[None, 4]`` float32) computing ``x @ w + b``
with fixed weights, saved as a SavedModel (``tf2model/``). The flavor also saves Keras models:
:data:`MLFLOW_SAVE_KERAS` saves tests/flavor_models/keras.py's with ``mlflow.tensorflow``."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

from flavor_models.keras import MLFLOW_LIBRARIES, MLFLOW_PINS, SOURCE, features

__all__ = ["MLFLOW_LIBRARIES", "MLFLOW_SAVE", "MLFLOW_SAVE_KERAS", "module", "save_envkit"]


def module() -> Any:
    """The tf.Module: ``x @ w + b`` with fixed weights, its signature ``[None, 4]`` float32."""
    import tensorflow as tf

    class Scaler(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([[1.0, -1.0], [0.5, 2.0], [-2.0, 0.25], [3.0, 1.0]])
            self.b = tf.Variable([0.1, -0.2])

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x: Any) -> Any:
            return tf.matmul(x, self.w) + self.b

    return Scaler()


def save_envkit(path: str | Path) -> None:
    """Save the module with envkit.tensorflow, three rows as input example."""
    import envkit.tensorflow

    envkit.tensorflow.save_model(module(), path, input_example=features()[:3])


MLFLOW_SAVE = f"""
import sys
from typing import Any

import mlflow.tensorflow

{SOURCE}
{textwrap.dedent(inspect.getsource(module))}
{MLFLOW_PINS}
mlflow.tensorflow.save_model(module(), sys.argv[1], input_example=features()[:3],
                             pip_requirements=pins)
"""

MLFLOW_SAVE_KERAS = f"""
import sys
from typing import Any

import mlflow.tensorflow

{SOURCE}
{MLFLOW_PINS}
mlflow.tensorflow.save_model(sequential(), sys.argv[1], input_example=features()[:3],
                             pip_requirements=pins)
"""
