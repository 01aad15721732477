"""A tiny ONNX model: a linear score fitted on eight rows (numpy least squares), written
with ``onnx.helper`` (no converter, no download), with two outputs, ``score`` and
``probability`` (its sigmoid). Its input is one float32 tensor ``x`` of shape (-1, 4)."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any


def training_data() -> tuple[Any, Any]:
    """(X, y): eight rows of four float32 features and a linear target."""
    import numpy as np

    X = np.array(
        [
            [1.0, 2.0, 3.0, 4.0],
            [0.0, 1.0, 0.0, 1.0],
            [2.0, 0.5, 1.0, 0.0],
            [1.5, 1.5, 1.5, 1.5],
            [3.0, 0.0, 2.0, 1.0],
            [0.5, 2.5, 0.5, 2.0],
            [2.0, 2.0, 0.0, 3.0],
            [1.0, 0.0, 4.0, 0.5],
        ],
        dtype=np.float32,
    )
    y = X @ np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32) + 0.1
    return X, y


def linear_model(X: Any, y: Any) -> Any:
    """An onnx.ModelProto: score = X @ W + b (W, b by least squares), probability = sigmoid."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    A = np.hstack([X, np.ones((len(X), 1), dtype=X.dtype)])
    coef = np.linalg.lstsq(A, y, rcond=None)[0].astype(np.float32)
    W = numpy_helper.from_array(coef[:-1].reshape(-1, 1), "W")
    b = numpy_helper.from_array(coef[-1:], "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["score"]),
        helper.make_node("Sigmoid", ["score"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 1]),
        ],
        [W, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # read by every onnxruntime since 1.10
    onnx.checker.check_model(model)
    return model


def wide_model() -> Any:
    """An onnx.ModelProto whose weights (8 KiB) go to an external data file when saved with
    ``save_as_external_data``: y = x @ W, x of shape (-1, 4), y of shape (-1, 512)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = np.arange(4 * 512, dtype=np.float32).reshape(4, 512) / 1000
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 512])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def save_envkit(path: str | Path) -> None:
    """Fit the linear model and save it with envkit, the first three rows as input example."""
    import envkit.onnx

    X, y = training_data()
    envkit.onnx.save_model(linear_model(X, y), path, input_example=X[:3])


# The builders' source, for scripts that run in the MLflow virtualenv (which has no envkit).
SOURCE = "\n\n".join(
    textwrap.dedent(inspect.getsource(f)) for f in (training_data, linear_model, wide_model)
)

MLFLOW_SAVE = f"""
import sys
from typing import Any

import mlflow.onnx

{SOURCE}

X, y = training_data()
mlflow.onnx.save_model(linear_model(X, y), sys.argv[1], input_example=X[:3])
"""
