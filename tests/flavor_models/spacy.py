"""A tiny spaCy pipeline: ``spacy.blank("en")`` with a ``textcat`` (POSITIVE / NEGATIVE) trained
for a few iterations on eight sentences (seeded); nothing is downloaded. Its pyfunc takes a
DataFrame of one text column and returns the ``cats`` of each text (MLflow's ``predictions``).

MLflow's virtualenv needs spaCy: :data:`MLFLOW_LIBRARIES` (this interpreter's version)."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

MLFLOW_LIBRARIES = ("spacy", "pandas", "numpy")

TRAINING = [
    ("what a great film", "POSITIVE"),
    ("I loved every minute", "POSITIVE"),
    ("wonderful acting and a fine story", "POSITIVE"),
    ("a happy ending", "POSITIVE"),
    ("this was terrible", "NEGATIVE"),
    ("I hated it", "NEGATIVE"),
    ("boring and far too long", "NEGATIVE"),
    ("an awful script", "NEGATIVE"),
]


def pipeline() -> Any:
    """The blank English pipeline with its text categorizer, trained (seeded)."""
    import spacy
    from spacy.training import Example

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("textcat")
    for label in ("POSITIVE", "NEGATIVE"):
        textcat.add_label(label)
    examples = [
        Example.from_dict(
            nlp.make_doc(text),
            {
                "cats": {
                    "POSITIVE": float(label == "POSITIVE"),
                    "NEGATIVE": float(label != "POSITIVE"),
                }
            },
        )
        for text, label in TRAINING
    ]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(8):
        nlp.update(examples, sgd=optimizer)
    return nlp


def texts(n: int = 3) -> Any:
    import pandas as pd

    return pd.DataFrame({"text": [text for text, _ in TRAINING][:n]})


def save_envkit(path: str | Path) -> None:
    """Train the pipeline and save it with envkit, three texts as input example."""
    import envkit.spacy

    envkit.spacy.save_model(pipeline(), path, input_example=texts())


_SOURCE = "\n\n".join(
    [f"TRAINING = {TRAINING!r}", textwrap.dedent(inspect.getsource(pipeline)),
     textwrap.dedent(inspect.getsource(texts))]
)  # fmt: skip

# The requirements are given (those installed there): MLflow's inference process would take
# longer to find the same ones.
MLFLOW_SAVE = f"""
import sys
from importlib.metadata import version
from typing import Any

import mlflow.spacy

{_SOURCE}

mlflow.spacy.save_model(
    pipeline(), sys.argv[1], input_example=texts(),
    pip_requirements=[f"{{name}}=={{version(name)}}" for name in ("spacy", "pandas")],
)
"""
