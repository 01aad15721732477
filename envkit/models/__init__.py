"""The MLflow Model format: MLmodel, signatures, input examples, models-from-code.

Names are imported lazily so that ``import envkit.models`` does not pull in pandas or numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envkit._lazy import lazy_attributes

if TYPE_CHECKING:
    from envkit.models.code import set_model
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
        "set_model": "envkit.models.code",
        "ModelSignature": "envkit.models.signature",
        "Schema": "envkit.models.schema",
        "ColSpec": "envkit.models.schema",
        "TensorSpec": "envkit.models.schema",
        "ParamSchema": "envkit.models.schema",
        "ParamSpec": "envkit.models.schema",
        "get_model_config": "envkit.models.code",
        "infer_signature": "envkit.models.signature",
        "validate_serving_input": "envkit.pyfunc.serving_input",
        "update_model_requirements": "envkit.deps.update",
        "predict": "envkit.sandbox.validate",
    },
)
