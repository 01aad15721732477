"""Bytecode for cached environments, compiled by envkit (never by a model) and shared.

A model's runs see the environment read-only, so they write no bytecode into it; envkit
compiles what a run imported afterwards, with the environment's own Python, and keeps each
compiled code object in a store beside the environments (``<cache>/bytecode``), keyed by the
interpreter and the SHA-256 of the source. Building another environment that installs the
same files then starts with their bytecode: no run pays for compiling a library twice. The
work is done by :mod:`envkit.sandbox._bytecode_child`, run by the environment's Python.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["BytecodeResult", "compile_sources", "seed", "store_root"]

_CHILD = Path(__file__).with_name("_bytecode_child.py")


def store_root(cache_root: Path) -> Path:
    return cache_root / "bytecode"


@dataclass
class BytecodeResult:
    """What one pass did: files per outcome (present, seeded, compiled, absent, failed)."""

    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    ok: bool = True


def seed(python: Path, store: Path, *, timeout: float = 300) -> BytecodeResult:
    """Write into the environment of ``python`` the bytecode the store has for its files."""
    if not (store / "").exists():
        return BytecodeResult()
    return _child(python, "seed", store, "", timeout)


def compile_sources(
    python: Path, store: Path, sources: Sequence[str], *, timeout: float = 600
) -> BytecodeResult:
    """Compile ``sources`` (files of the environment of ``python``), taking from the store
    what it has and adding what it did not."""
    return _child(python, "compile", store, "".join(f"{s}\n" for s in sources), timeout)


def _child(python: Path, mode: str, store: Path, stdin: str, timeout: float) -> BytecodeResult:
    from envkit._subprocess import run as run_process

    argv = [str(python), "-I", "-B", str(_CHILD), mode, str(store)]
    outcome = run_process(argv, input=stdin, timeout=timeout)
    if not outcome.ok:
        logger.info("bytecode %s failed: %s", mode, outcome.stderr[-500:])
        return BytecodeResult(seconds=outcome.duration, ok=False)
    try:
        counts = {str(k): int(v) for k, v in json.loads(outcome.stdout).items()}
    except (ValueError, AttributeError, TypeError):
        counts = {}
    logger.info("bytecode %s: %s in %.2fs", mode, counts, outcome.duration)
    return BytecodeResult(counts, outcome.duration)
