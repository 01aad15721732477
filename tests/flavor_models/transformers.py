"""Tiny transformers pipelines built in the test session, never downloaded: a BERT of 2 layers
and hidden size 32 (random weights, seeded) over a WordPiece tokenizer read from a 25-word
vocabulary file, and a GPT-2 of the same size for text generation. Their predictions mean
nothing; they are the same wherever the saved weights are loaded, which is what is tested."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

# fmt: off
WORDS = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great", "bad", "i",
    "loved", "hated", "it", "a", "film", "paris", "is", "in", "france", "john", "lives", "good",
    "boring", "fun",
]
# fmt: on
CLASS_LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
ENTITY_LABELS = {0: "O", 1: "PER", 2: "LOC"}


def tiny_tokenizer(workdir: str | Path) -> Any:
    """A BertTokenizer over :data:`WORDS`, written to ``workdir/vocab.txt`` and read back."""
    from transformers import BertTokenizer

    vocab = Path(workdir) / "vocab.txt"
    vocab.parent.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(WORDS) + "\n")
    lines = vocab.read_text().splitlines()
    return BertTokenizer(vocab={word: i for i, word in enumerate(lines)})


def bert_config(labels: dict[int, str] | None = None) -> Any:
    """BertConfig: 2 layers, hidden 32, 2 heads (``labels``: id2label of a classifier head)."""
    from transformers import BertConfig

    extra: dict[str, Any] = {}
    if labels:
        extra = {"id2label": labels, "label2id": {v: k for k, v in labels.items()}}
    return BertConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        **extra,
    )


def tiny_pipeline(task: str, workdir: str | Path) -> Any:
    """A pipeline of ``task`` (text-classification, token-classification, fill-mask,
    feature-extraction or text-generation) over a tiny model with seeded random weights."""
    import torch
    import transformers

    tokenizer = tiny_tokenizer(workdir)
    torch.manual_seed(0)
    if task == "text-generation":
        config = transformers.GPT2Config(
            vocab_size=len(WORDS),
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=2,
            bos_token_id=2,
            eos_token_id=0,
            pad_token_id=0,
        )
        model = transformers.GPT2LMHeadModel(config)
    else:
        classes = {
            "text-classification": ("BertForSequenceClassification", CLASS_LABELS),
            "token-classification": ("BertForTokenClassification", ENTITY_LABELS),
            "fill-mask": ("BertForMaskedLM", None),
            "feature-extraction": ("BertModel", None),
        }
        name, labels = classes[task]
        model = getattr(transformers, name)(bert_config(labels))
    return transformers.pipeline(task, model=model.eval(), tokenizer=tokenizer)


def sentences() -> list[str]:
    """Three inputs every tiny pipeline takes (fill-mask's each hold one [MASK])."""
    return ["the movie was great", "i hated the [MASK] film", "john lives in paris"]


def save_envkit(path: str | Path) -> None:
    """A text-classification pipeline saved with envkit, one sentence as input example."""
    import envkit.transformers

    pipe = tiny_pipeline("text-classification", Path(str(path) + "-build"))
    envkit.transformers.save_model(pipe, path, input_example=sentences()[:2])


# The builders' source, for scripts that run in the MLflow virtualenv (which has no envkit).
SOURCE = "\n\n".join(
    [f"WORDS = {WORDS!r}\nCLASS_LABELS = {CLASS_LABELS!r}\nENTITY_LABELS = {ENTITY_LABELS!r}"]
    + [
        textwrap.dedent(inspect.getsource(f))
        for f in (tiny_tokenizer, bert_config, tiny_pipeline, sentences)
    ]
)

# Given to MLflow: its own would pin torch without its local label (torch==2.13.0, which
# PyPI serves as a CUDA build of several GB) and, for transformers, ask for torchvision.
MLFLOW_REQUIREMENTS = """
from importlib.metadata import version

REQUIREMENTS = [
    f"{name}=={version(name)}" for name in ("torch", "transformers")
]
"""

MLFLOW_SAVE = f"""
import sys
{MLFLOW_REQUIREMENTS}
from pathlib import Path
from typing import Any

import mlflow.transformers

{SOURCE}

pipe = tiny_pipeline("text-classification", Path(sys.argv[1] + "-build"))
mlflow.transformers.save_model(
    pipe, sys.argv[1], input_example=sentences()[:2], pip_requirements=REQUIREMENTS
)
"""

# MLflow runs from a virtualenv of its own with these (tests/conftest.py: HF_LIBRARIES).
MLFLOW_LIBRARIES = ("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors")
