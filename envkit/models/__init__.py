"""The MLflow Model format: MLmodel, signatures, input examples.

Names are imported lazily so that ``import envkit.models`` does not pull in pandas or numpy.
A few names live in the layers above, as MLflow's ``mlflow.models`` offers them: models from
code (``set_model``, ``get_model_config``) and ``validate_serving_input`` in
:mod:`envkit.pyfunc`, ``update_model_requirements`` in :mod:`envkit.deps`, ``predict`` in
:mod:`envkit.sandbox`. They are resolved on first access only, so this package imports
nothing above the format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envkit._lazy import lazy_attributes

if TYPE_CHECKING:
    from envkit.models.model import MLMODEL_FILE_NAME, Model, ModelInfo, get_model_info

__all__ = [
    "MLMODEL_FILE_NAME",
    "ColSpec",
    "Model",
    "ModelInfo",
    "ModelSignature",
    "ParamSchema",
    "ParamSpec",
    "Schema",
    "TensorSpec",
    "add_wheels",
    "get_model_config",
    "get_model_info",
    "infer_signature",
    "predict",
    "set_model",
    "update_model_requirements",
    "validate_serving_input",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "Model": "envkit.models.model",
        "ModelInfo": "envkit.models.model",
        "MLMODEL_FILE_NAME": "envkit.models.model",
        "get_model_info": "envkit.models.model",
        "set_model": "envkit.pyfunc.code",
        "ModelSignature": "envkit.models.signature",
        "Schema": "envkit.models.schema",
        "ColSpec": "envkit.models.schema",
        "TensorSpec": "envkit.models.schema",
        "ParamSchema": "envkit.models.schema",
        "ParamSpec": "envkit.models.schema",
        "get_model_config": "envkit.pyfunc.code",
        "infer_signature": "envkit.models.signature",
        "validate_serving_input": "envkit.pyfunc.serving_input",
        "update_model_requirements": "envkit.deps.update",
        "predict": "envkit.sandbox.validate",
        "add_wheels": "envkit.sandbox.wheels",
    },
)
