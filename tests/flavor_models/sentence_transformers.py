"""A tiny SentenceTransformer built from modules in the test session, never downloaded: the
tiny BERT of ``flavor_models.transformers`` (2 layers, hidden 32, seeded random weights) saved
to a local directory, read by ``models.Transformer``, and mean ``models.Pooling`` over it.
Its embeddings have 32 dimensions."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

from flavor_models.transformers import SOURCE as TRANSFORMERS_SOURCE
from flavor_models.transformers import bert_config, tiny_tokenizer


def tiny_sentence_model(workdir: str | Path) -> Any:
    """models.Transformer over the tiny BERT (saved in ``workdir/bert``) + mean pooling."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 6 (sentence_transformers.models warns there)
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models

    bert = Path(workdir) / "bert"
    tokenizer = tiny_tokenizer(workdir)
    torch.manual_seed(0)
    transformers.BertModel(bert_config()).save_pretrained(str(bert))
    tokenizer.save_pretrained(str(bert))
    word = models.Transformer(str(bert), max_seq_length=32)
    pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[word, pooling], device="cpu")


def save_envkit(path: str | Path) -> None:
    """The tiny model saved with envkit, two sentences as input example."""
    import envkit.sentence_transformers

    model = tiny_sentence_model(Path(str(path) + "-build"))
    envkit.sentence_transformers.save_model(model, path, input_example=SENTENCES[:2])


SENTENCES = ["the movie was great", "a boring film", "john lives in paris"]

# The builders' source, self-contained (it runs in the MLflow virtualenv too).
SOURCE = "\n\n".join(
    [
        "from pathlib import Path\nfrom typing import Any",
        TRANSFORMERS_SOURCE,
        textwrap.dedent(inspect.getsource(tiny_sentence_model)),
    ]
)

# Given to MLflow: its own would pin torch without its local label (torch==2.13.0, which
# PyPI serves as a CUDA build of several GB) and, for transformers, ask for torchvision.
MLFLOW_REQUIREMENTS = """
from importlib.metadata import version

REQUIREMENTS = [
    f"{name}=={version(name)}" for name in ("torch", "transformers", "sentence-transformers")
]
"""

MLFLOW_SAVE = f"""
import sys
{MLFLOW_REQUIREMENTS}

import mlflow.sentence_transformers

{SOURCE}

model = tiny_sentence_model(Path(sys.argv[1] + "-build"))
mlflow.sentence_transformers.save_model(
    model, sys.argv[1], input_example={SENTENCES[:2]!r}, pip_requirements=REQUIREMENTS
)
"""

# MLflow runs from a virtualenv of its own with these (tests/conftest.py: HF_LIBRARIES).
MLFLOW_LIBRARIES = ("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors")
