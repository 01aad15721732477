"""A tiny PyTorch model: an ``nn.Sequential`` (Linear 3→4, ReLU, Linear 4→1) trained for a few
steps of SGD on twelve rows of three float32 columns; its pyfunc turns a DataFrame into a
float32 tensor and returns a one-column DataFrame.

envkit saves the whole module (pickled with cloudpickle, ``data/model.pth``) with a DataFrame
input example; MLflow saves the same kind of module in its default format, ``torch.export``
(``data/model.pt2``), which needs an array input example. MLflow's virtualenv needs torch:
:data:`MLFLOW_LIBRARIES` (this interpreter's ``torch==2.13.0+cpu``, which uv finds in
``/opt/wheels`` through ``UV_FIND_LINKS``; never PyPI's multi-GB CUDA build)."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

MLFLOW_LIBRARIES = ("torch", "pandas", "numpy", "cloudpickle")
COLUMNS = ["f0", "f1", "f2"]


def training_data() -> tuple[Any, Any]:
    """(X, y): twelve rows of three float32 features (a DataFrame) and a float32 target."""
    import numpy as np
    import pandas as pd

    i = np.arange(12, dtype=np.float32)
    X = pd.DataFrame(
        {"f0": np.sin(i), "f1": np.cos(1.7 * i), "f2": (i % 5) / 4.0}, dtype=np.float32
    )
    y = (2 * X["f0"] - X["f1"] + 0.5 * X["f2"]).to_numpy(dtype=np.float32).reshape(-1, 1)
    return X, y


def network(X: Any, y: Any) -> Any:
    """The nn.Sequential, trained for twenty SGD steps (seeded: deterministic on one thread)."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    inputs, target = torch.tensor(X.to_numpy()), torch.tensor(y)
    for _ in range(20):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(inputs), target)
        loss.backward()
        optimizer.step()
    return net.eval()


def save_envkit(path: str | Path) -> None:
    """Train the network and save it with envkit, the first three rows as input example."""
    import envkit.pytorch

    X, y = training_data()
    envkit.pytorch.save_model(network(X, y), path, input_example=X.head(3))


_SOURCE = "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in (training_data, network))

# The requirements are given (those installed there): MLflow's inference process would take
# ~30 s more to find the same ones.
MLFLOW_SAVE = f"""
import sys
from importlib.metadata import version
from typing import Any

import mlflow.pytorch

{_SOURCE}

requirements = [f"{{name}}=={{version(name)}}" for name in ("torch", "numpy")]
X, y = training_data()
mlflow.pytorch.save_model(
    network(X, y), sys.argv[1], input_example=X.head(3).to_numpy(), serialization_format="pt2",
    pip_requirements=requirements,
)
"""
