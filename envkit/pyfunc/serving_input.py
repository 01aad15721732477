"""Validate a scoring payload against a saved model: load it, parse the payload, predict.

The parser is the format's (:func:`envkit.models.serving_input.parse_serving_input`); loading
the model is the pyfunc flavor's, so this lives here. ``envkit.models.validate_serving_input``
is this function, as ``mlflow.models.validate_serving_input`` is MLflow's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from envkit.errors import EnvkitError, ModelFailedError, ServingInputError
from envkit.models.serving_input import parse_serving_input
from envkit.pyfunc.loading import load_model

__all__ = ["validate_serving_input"]


def validate_serving_input(
    model_uri: str | os.PathLike[str],
    serving_input: str | bytes | dict[str, Any] | os.PathLike[str],
) -> Any:
    """Load the model, parse ``serving_input`` as the scoring server would, and predict.

    ``serving_input`` is a JSON payload (text, bytes or a parsed dict) or the path of a file
    holding one. Returns the predictions; a bad payload or a schema violation raises the same
    error the server would report, and a model failure raises
    :class:`~envkit.errors.ModelFailedError`.
    """
    if isinstance(serving_input, os.PathLike):
        try:
            serving_input = Path(serving_input).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ServingInputError(
                f"cannot read the serving input {serving_input}: {exc}"
            ) from exc
    model = load_model(model_uri)
    meta = model.metadata
    data, params = parse_serving_input(
        serving_input,
        schema=meta.get_input_schema(),
        params_schema=meta.get_params_schema(),
        signature_from_type_hint=bool(meta.is_signature_from_type_hint),
    )
    try:
        return model.predict(data, params=params)
    except EnvkitError:
        raise
    except Exception as exc:
        from envkit.deps.envvars import redact_values

        raise ModelFailedError(
            "the model failed to predict on the serving input: "
            + redact_values(f"{type(exc).__name__}: {exc}")
        ) from exc
