"""The pickle module envkit's pytorch flavor saves whole models with: cloudpickle, in the shape
``torch.save(..., pickle_module=)`` expects (a ``Pickler`` class, ``dump``, and a plain
``Unpickler``), as ``mlflow.pytorch.pickle_module`` is. A model class defined in ``__main__``
is pickled by value, so the model loads without the script that trained it.

Its name goes into ``data/pickle_module_info.txt``; envkit reads MLflow's name for the same
module (``mlflow.pytorch.pickle_module``) as this one, so that MLflow's models load without
MLflow.
"""

from __future__ import annotations

from pickle import Unpickler  # noqa: F401

from cloudpickle import *  # noqa: F403
from cloudpickle import CloudPickler as Pickler  # noqa: F401
