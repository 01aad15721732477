"""The ``spacy`` flavor, file-compatible with ``mlflow.spacy``.

    import envkit.spacy

    nlp = spacy.blank("en"); nlp.add_pipe("textcat") ...; nlp.initialize(); nlp.update(...)
    envkit.spacy.save_model(nlp, "textcat_model", input_example=pd.DataFrame({"text": ["..."]}))
    nlp = envkit.spacy.load_model("textcat_model")        # the spacy.Language
    pyfunc = envkit.pyfunc.load_model("textcat_model")    # predict(DataFrame of one text column)

The pipeline is written by its own ``to_disk`` into ``model.spacy/`` (spaCy's config and binary
weights: no pickle); the flavor section has MLflow's keys (``spacy_version``, ``data``, ``code``).
As MLflow's, the ``python_function`` flavor is written only for a pipeline with a text
categorizer (``textcat`` or ``textcat_multilabel``), and its ``predict`` takes a DataFrame of one
text column and returns a DataFrame whose ``predictions`` column holds each text's ``cats``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from envkit.pyfunc.flavor_kit import LibraryRequirements

FLAVOR_NAME = "spacy"
SPACY_DATA_SUBPATH = "model.spacy"
LOADER_MODULE = "envkit.spacy"

__all__ = [
    "FLAVOR_NAME",
    "SPACY_DATA_SUBPATH",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]
logger = logging.getLogger(__name__)


def _spacy() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("spacy", flavor=FLAVOR_NAME)


_REQUIREMENTS = LibraryRequirements(("spacy",))


def get_default_pip_requirements() -> list[str]:
    """What the model needs besides envkit, as MLflow's: spacy, pinned to this version."""
    return _REQUIREMENTS.pip()


def get_default_conda_env() -> dict[str, Any]:
    """The ``conda.yaml`` mapping of a model of this flavor: this Python, envkit and
    :func:`get_default_pip_requirements`."""
    return _REQUIREMENTS.conda_env()


def has_text_categorizer(nlp: Any) -> bool:
    """Whether the pipeline has a text categorizer (what MLflow's pyfunc needs)."""
    from spacy.pipeline import TextCategorizer

    return any(isinstance(component, TextCategorizer) for _, component in nlp.pipeline)


def save_model(
    spacy_model: Any,
    path: str | os.PathLike[str],
    *,
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
    """Save a spaCy pipeline (``spacy.Language``) as an MLflow Model directory at ``path``.

    Without a text categorizer only the ``spacy`` flavor is written (with a warning, as
    MLflow's): the model loads with :func:`load_model`, not as a pyfunc."""
    spacy = _spacy()
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if not isinstance(spacy_model, spacy.language.Language):
        raise UsageError(
            f"a spacy model is a pipeline (spacy.Language), not a {type(spacy_model).__name__}"
        )
    pyfunc = has_text_categorizer(spacy_model)
    if not pyfunc:
        logger.warning(
            "the pipeline has no text categorizer: only the spacy flavor is written (it loads "
            "with envkit.spacy.load_model, not as a pyfunc), as MLflow does"
        )

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        spacy_model.to_disk(staging / SPACY_DATA_SUBPATH)
        if pyfunc:
            model.add_flavor(
                "python_function",
                loader_module=LOADER_MODULE,
                data=SPACY_DATA_SUBPATH,
                **({"code": code_dir} if code_dir else {}),
            )
        model.add_flavor(
            FLAVOR_NAME, spacy_version=spacy.__version__, data=SPACY_DATA_SUBPATH, code=code_dir
        )

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=_REQUIREMENTS.with_envkit,
            pyfunc_impl=(lambda staging: _SpacyModelWrapper(spacy_model)) if pyfunc else None,
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
    spacy_model: Any, artifact_path: str | None = None, *, name: str | None = None, **kwargs: Any
) -> Any:
    """Save ``spacy_model`` into the active run (see :func:`envkit.start_run`)."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, spacy_model=spacy_model, **kwargs)


def load_model(
    model_uri: str | os.PathLike[str],
    *,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> Any:
    """Load the spaCy pipeline of the model at ``model_uri`` (``spacy.load`` of its
    ``model.spacy``; MLflow's models before 0.8 have no ``data`` key: ``model.spacy``)."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(
        model_uri, FLAVOR_NAME, trust_model=trust_model, trusted_types=trusted_types
    )
    return _load_directory(opened.file("data", SPACY_DATA_SUBPATH))


def _load_directory(path: Path) -> Any:
    spacy = _spacy()
    from envkit.errors import ModelFormatError

    if not path.is_dir():
        raise ModelFormatError(f"the spacy model's pipeline directory {path} is missing")
    return spacy.load(path)


class _SpacyModelWrapper:
    """pyfunc adapter with MLflow's rules: one text column in, ``predictions`` (the ``cats`` of
    each text) out."""

    def __init__(self, spacy_model: Any) -> None:
        self.spacy_model = spacy_model

    def get_raw_model(self) -> Any:
        return self.spacy_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        from envkit.errors import SchemaEnforcementError

        if not isinstance(data, pd.DataFrame) or len(data.columns) != 1:
            got = f"columns {list(data.columns)}" if hasattr(data, "columns") else type(data)
            raise SchemaEnforcementError(
                f"a spacy model predicts on a DataFrame of one text column (got {got})"
            )
        # one call per text, as MLflow's (a batch through nlp.pipe may differ in the last bits)
        cats = [self.spacy_model(text).cats for text in data.iloc[:, 0]]
        return pd.DataFrame({"predictions": cats}, index=data.index)


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _SpacyModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.spacy``): ``path`` is
    the model directory or its ``model.spacy``."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    target = Path(path)
    if not (target / "config.cfg").is_file():
        opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
        target = opened.file("data", SPACY_DATA_SUBPATH)
    return _SpacyModelWrapper(_load_directory(target))
