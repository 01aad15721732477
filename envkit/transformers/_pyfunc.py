"""The pyfunc of a transformers pipeline: MLflow's input and output formats per task.

Inputs: a string, a list of strings, a dict (``{"text": ..., "text_pair": ...}`` for text
classification), a list of dicts, or a DataFrame (its rows become dicts, as a served payload
arrives). Outputs, as ``mlflow.transformers``' pyfunc returns them:

- text-classification: a DataFrame with ``label`` and ``score``;
- token-classification: per input, the entities joined by commas (``"PER,O,LOC"``);
- fill-mask: per input, the best token for the mask;
- feature-extraction: an array (the first input's first token embeddings, MLflow's choice);
- text-generation: per input, the generated text, prompt included (``model_config``'s
  ``collapse_whitespace: True`` turns each run of whitespace into one space).

A list of one string comes back as that string in a list. ``model_config`` (saved) and
``params`` (per call, overriding it) are keyword arguments of the pipeline call.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Mapping
from typing import Any

PYFUNC_TASKS = (
    "text-classification",
    "token-classification",
    "fill-mask",
    "feature-extraction",
    "text-generation",
)
# Tasks whose input a saved prompt template formats (MLflow's list, restricted to PYFUNC_TASKS)
_TEMPLATED = ("feature-extraction", "fill-mask", "text-generation")
# Pyfunc-only keys of model_config, never passed to the pipeline
_WRAPPER_KEYS = ("include_prompt", "collapse_whitespace")


def _bad_input(message: str) -> Exception:
    from envkit.errors import SchemaEnforcementError

    return SchemaEnforcementError(message)


def _is_frame(data: Any) -> bool:
    import sys

    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


def _str_or_strings(data: Any) -> None:
    if isinstance(data, str):
        return
    if isinstance(data, list) and all(isinstance(entry, str) for entry in data):
        return
    raise _bad_input(
        f"this pipeline takes a string or a list of strings, not {type(data).__name__}"
    )


def _classification_input(data: Any) -> Any:
    """Strings, or ``{"text", "text_pair"}`` dicts (JSON-encoded by serving: decoded back)."""

    def check_keys(payload: dict[Any, Any]) -> None:
        if set(payload) - {"text", "text_pair"} and not all(isinstance(k, int) for k in payload):
            raise _bad_input("text classification dicts hold only the keys text and text_pair")

    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        check_keys(data)
        return data
    if isinstance(data, list) and all(isinstance(item, str) for item in data):
        return data
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        for payload in data:
            check_keys(payload)
        if data and next(iter(data[0]), None) == 0:  # rows of a DataFrame of one unnamed column
            data = [item[0] for item in data]
        try:
            return [ast.literal_eval(item) for item in data]
        except (ValueError, SyntaxError, TypeError):
            return data
    raise _bad_input("text classification takes a string, a list of strings, a dict or dicts")


class TransformersWrapper:
    """pyfunc adapter of a transformers Pipeline (see the module docstring)."""

    def __init__(
        self,
        pipeline: Any,
        flavor_config: Mapping[str, Any] | None = None,
        model_config: Mapping[str, Any] | None = None,
        prompt_template: str | None = None,
    ) -> None:
        from envkit.errors import ModelFormatError

        self.pipeline = pipeline
        self.flavor_config = dict(flavor_config or {})
        self.model_config = dict(model_config or {})
        self.prompt_template = prompt_template
        self.task = str(self.flavor_config.get("task") or pipeline.task)
        if self.flavor_config.get("inference_task"):
            raise ModelFormatError(
                f"the model's MLflow inference task {self.flavor_config['inference_task']!r} "
                "(llm/v1 chat, completions, embeddings) is not supported by envkit"
            )

    def get_raw_model(self) -> Any:
        """The transformers Pipeline."""
        return self.pipeline

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """The pipeline's predictions for ``data`` in MLflow's format for the task."""
        config = copy.deepcopy(self.model_config)
        config.update(params or {})
        if self.task not in PYFUNC_TASKS:
            raise _bad_input(f"the {self.task} pipeline has no pyfunc in envkit")
        if _is_frame(data):
            data = data.to_dict(orient="records")
        elif isinstance(data, list):
            if not all(isinstance(entry, (str, dict)) for entry in data):
                raise _bad_input("a list input holds strings or dicts of strings")
        elif not isinstance(data, (dict, str)):
            raise _bad_input(
                "the input is a string, a list of strings, a dict, dicts or a DataFrame, not "
                f"{type(data).__name__}"
            )
        return self._predict(self._parse_input(data), config)

    def _parse_input(self, data: Any) -> Any:
        if self.task == "text-classification":
            return _classification_input(data)
        if isinstance(data, list) and data and all(isinstance(entry, dict) for entry in data):
            return [next(iter(entry.values())) for entry in data]  # one column's rows
        return data

    def _template(self, data: Any) -> Any:
        if not self.prompt_template or self.task not in _TEMPLATED:
            return data
        if isinstance(data, str):
            return self.prompt_template.format(prompt=data)
        return [self.prompt_template.format(prompt=item) for item in data]

    def _predict(self, data: Any, config: dict[str, Any]) -> Any:
        options = {key: config.pop(key) for key in _WRAPPER_KEYS if key in config}
        if self.task in ("fill-mask", "text-generation"):
            _str_or_strings(data)
        data = self._template(data)
        raw = self._call(data, config)
        if self.task == "text-classification":
            import pandas as pd

            return pd.DataFrame(raw)
        if self.task == "feature-extraction":
            import numpy as np

            return raw if isinstance(raw, np.ndarray) else np.array(raw[0][0])
        if self.task == "text-generation":
            output: Any = _generated_texts(data, raw, options.get("collapse_whitespace", False))
        elif self.task == "fill-mask":
            output = _best_tokens(raw)
        else:
            output = _entities(raw)
        output = self._sanitize(output, data)
        return [output] if isinstance(output, str) else output

    def _call(self, data: Any, config: dict[str, Any]) -> Any:
        try:
            if isinstance(data, dict):
                return self.pipeline(**data, **config)
            return self.pipeline(data, **config)
        except (TypeError, ValueError) as exc:
            if "model_kwargs" in str(exc) or isinstance(exc, TypeError):
                raise _bad_input(
                    f"the {self.task} pipeline refused its arguments "
                    f"({', '.join(sorted(config)) or 'none'}): {exc}"
                ) from exc
            raise

    def _sanitize(self, output: Any, data: Any) -> Any:
        """MLflow's clean-up: strings stripped, a list of one string returned as the string."""
        if (
            self.task != "token-classification"
            and isinstance(data, str)
            and isinstance(output, list)
        ):
            output = output[0]
        if isinstance(output, str):
            return output.strip()
        if isinstance(output, list) and all(isinstance(item, str) for item in output):
            cleaned = [item.strip() for item in output]
            return cleaned if len(cleaned) > 1 else cleaned[0]
        if isinstance(output, list):
            return [self._sanitize(item, data) for item in output]
        return output


def _generated_texts(data: Any, raw: Any, collapse_whitespace: bool) -> Any:
    if all(isinstance(item, dict) for item in raw):
        texts: Any = raw[0]["generated_text"]
    else:
        texts = [item["generated_text"] for group in raw for item in group]

    def clean(text: str) -> str:
        return re.sub(r"\s+", " ", text).strip() if collapse_whitespace else text

    return clean(texts) if isinstance(texts, str) else [clean(text) for text in texts]


def _best_tokens(raw: Any) -> list[Any]:
    """The best ``token_str`` of each input's candidates."""

    def best(group: list[Any]) -> Any:
        if isinstance(group[0], dict):
            return group[0]["token_str"]
        return [candidates[0]["token_str"] for candidates in group]  # several masks

    return [best(group) for group in raw] if isinstance(raw[0], list) else [best(raw)]


def _entities(raw: Any) -> Any:
    """Each input's entities (``entity_group`` or ``entity``) joined by commas."""
    if raw and isinstance(raw[0], list):
        return [_entities(group) for group in raw]
    if not raw:
        return ""
    key = "entity_group" if "entity_group" in raw[0] else "entity"
    return ",".join(str(item[key]) for item in raw)
