"""The ``sentence_transformers`` flavor, file-compatible with ``mlflow.sentence_transformers``.

    import envkit.sentence_transformers

    envkit.sentence_transformers.save_model(model, "model", input_example=["a sentence"])
    model = envkit.sentence_transformers.load_model("model")   # the SentenceTransformer
    envkit.pyfunc.load_model("model").predict(["a", "b"])     # embeddings, one row each

The model is written with ``SentenceTransformer.save`` to ``model.sentence_transformer/``
(the python_function section's ``data``); the flavor section has MLflow's keys
(``sentence_transformers_version``, ``source_model_name`` and ``pipeline_model_type`` of the
transformers model inside, ``code``). ``inference_config`` (keyword arguments of ``encode``)
is written to ``inference_config`` as MLflow does, which its pyfunc does not apply: the
pyfunc's ``params`` are ``encode``'s keyword arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "sentence_transformers"
LOADER_MODULE = "envkit.sentence_transformers"
DATA_PATH = "model.sentence_transformer"
INFERENCE_CONFIG = "inference_config"
EMBEDDING_TASK = "llm/v1/embeddings"

__all__ = [
    "FLAVOR_NAME",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _library() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("sentence_transformers", "sentence-transformers", flavor=FLAVOR_NAME)


def get_default_pip_requirements() -> list[str]:
    """sentence-transformers, transformers and torch, pinned to the installed versions."""
    from envkit.pyfunc.flavor_kit import LibraryRequirements

    return LibraryRequirements(("sentence-transformers", "transformers", "torch")).pip()


def _transformer_metadata(model: Any) -> dict[str, str]:
    """``source_model_name`` and ``pipeline_model_type`` of the (first) transformers model
    inside, as MLflow records them; empty when the model has none."""
    try:  # sentence-transformers 6 moved it (the old path warns)
        from sentence_transformers.sentence_transformer.modules import Transformer
    except ImportError:
        from sentence_transformers.models import Transformer  # type: ignore[no-redef]

    for module in model.modules():
        if isinstance(module, Transformer):
            inner = module.auto_model
            return {
                "source_model_name": str(getattr(inner, "name_or_path", "") or ""),
                "pipeline_model_type": type(inner).__name__,
            }
    return {}


def _default_signature() -> Any:
    """MLflow's signature without an input example: strings in, float64 vectors out."""
    import numpy as np

    from envkit.models.schema import ColSpec, Schema, TensorSpec
    from envkit.models.signature import ModelSignature

    return ModelSignature(
        inputs=Schema([ColSpec("string")]), outputs=Schema([TensorSpec(np.dtype("float64"), [-1])])
    )


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    inference_config: dict[str, Any] | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: RequirementsArg = None,
    extra_pip_requirements: RequirementsArg = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    conda_env: dict[str, Any] | str | os.PathLike[str] | None = None,
    envkit_model: Any = None,
) -> Any:
    """Save a ``SentenceTransformer`` as an MLflow Model directory at ``path``. Without an
    input example nor a signature, the signature is MLflow's default (strings -> vectors)."""
    from envkit._version import __version__
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    library = _library()
    if not isinstance(model, library.SentenceTransformer):
        raise UsageError(f"model must be a SentenceTransformer, not {type(model).__name__}")
    if inference_config is not None and not isinstance(inference_config, dict):
        raise UsageError("inference_config must be a dict of SentenceTransformer.encode options")
    if signature is None and input_example is None:
        signature = _default_signature()

    def write(staging: Path, saved: Model, code_dir: str | None) -> None:
        from envkit.transformers import readable_by_all

        model.save(str(staging / DATA_PATH))
        readable_by_all(staging / DATA_PATH)
        pyfunc_conf: dict[str, Any] = {"loader_module": LOADER_MODULE, "data": DATA_PATH}
        if code_dir:
            pyfunc_conf["code"] = code_dir
        saved.add_flavor("python_function", **pyfunc_conf)
        saved.add_flavor(
            FLAVOR_NAME,
            sentence_transformers_version=library.__version__,
            code=code_dir,
            **_transformer_metadata(model),
        )
        if inference_config:
            (staging / INFERENCE_CONFIG).write_text(json.dumps(inference_config))

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=lambda: [
                f"envkit=={__version__}",
                *get_default_pip_requirements(),
            ],
            pyfunc_impl=lambda staging: SentenceTransformerWrapper(model),
        ),
        envkit_model=envkit_model,
        code_paths=code_paths,
        input_example=input_example,
        signature=signature,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        overwrite=overwrite,
        strict=strict,
        conda_env=conda_env,
    )


def log_model(
    model: Any, artifact_path: str | None = None, *, name: str | None = None, **kwargs: Any
) -> Any:
    """Save ``model`` into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, model=model, **kwargs)


def _load(directory: Path) -> Any:
    """The SentenceTransformer saved in ``directory``, its code never run (envkit passes no
    ``trust_remote_code``: a model with custom code fails to load instead)."""
    from envkit.errors import ModelFormatError

    if not (directory / "modules.json").is_file() and not (directory / "config.json").is_file():
        raise ModelFormatError(f"{directory.name} holds no saved SentenceTransformer")
    return _library().SentenceTransformer(str(directory), local_files_only=True)


def load_model(model_uri: str | os.PathLike[str]) -> Any:
    """Load the ``SentenceTransformer`` of the model at ``model_uri``."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(model_uri, FLAVOR_NAME)
    return _load(opened.file_named(opened.pyfunc_conf().get("data") or DATA_PATH))


class SentenceTransformerWrapper:
    """pyfunc adapter: ``predict`` encodes a string, a list of strings, a Series or the first
    column of a DataFrame; ``params`` are ``encode``'s keyword arguments."""

    def __init__(self, model: Any, task: str | None = None) -> None:
        from envkit.errors import ModelFormatError

        if task is not None:
            raise ModelFormatError(
                f"the model's MLflow inference task {task!r} (OpenAI-style embeddings) is not "
                "supported by envkit"
            )
        self.model = model

    def get_raw_model(self) -> Any:
        """The SentenceTransformer."""
        return self.model

    def predict(self, sentences: Any, params: dict[str, Any] | None = None) -> Any:
        """One embedding per sentence (an array of shape (n, dimension))."""
        import pandas as pd

        from envkit.errors import SchemaEnforcementError

        if isinstance(sentences, pd.DataFrame):
            sentences = sentences.iloc[:, 0].tolist()
            if sentences and isinstance(sentences[0], list):
                sentences = sentences[0]
        elif isinstance(sentences, pd.Series):
            sentences = sentences.tolist()
        try:
            return self.model.encode(sentences, **(params or {}))
        except TypeError as exc:
            raise SchemaEnforcementError(f"SentenceTransformer.encode refused: {exc}") from exc


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> Any:
    """Loader contract (also for models MLflow wrote with ``mlflow.sentence_transformers``):
    ``path`` is the python_function ``data`` directory or the model directory."""
    target = Path(path)
    if (target / DATA_PATH).is_dir():
        target = target / DATA_PATH
    return SentenceTransformerWrapper(_load(target), (model_config or {}).get("task"))
