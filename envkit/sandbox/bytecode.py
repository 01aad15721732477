"""Reuse compiled bytecode between environments that share installed files.

The first run in a fresh environment spends most of its time compiling the packages it
imports (seconds for scikit-learn, pandas, scipy). uv installs by hard-linking files from its
cache, so two environments holding the same package version hold the *same files* (same
inode). For such a file, a ``__pycache__`` entry compiled in one environment is valid in the
other, and a new environment is seeded with links to it.

Only files that are the same inode are seeded: the content is then identical by definition
(a size + mtime check could be fooled by wheels with fixed timestamps). Python still validates
every ``.pyc`` against its source when importing.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)


def site_packages(env: Path) -> Path | None:
    """The ``site-packages`` directory of a virtual environment (POSIX or Windows layout)."""
    if sys.platform == "win32":
        candidate = env / "Lib" / "site-packages"
        return candidate if candidate.is_dir() else None
    for candidate in sorted((env / "lib").glob("python3*/site-packages")):
        if candidate.is_dir():
            return candidate
    return None


def seed_bytecode(env: Path, donors: Iterable[Path]) -> int:
    """Link compiled bytecode from ``donors`` into ``env`` for files they share; returns the
    number of ``.pyc`` files seeded."""
    target_root = site_packages(env)
    if target_root is None:
        return 0
    seeded = 0
    for donor in donors:
        donor_root = site_packages(donor)
        if donor_root is None or donor_root.name != target_root.name:
            continue
        if donor_root.parent.name != target_root.parent.name:  # another python3.X
            continue
        seeded += _seed_from(target_root, donor_root)
    if seeded:
        logger.debug("seeded %d compiled files into %s", seeded, env)
    return seeded


def _seed_from(target_root: Path, donor_root: Path) -> int:
    seeded = 0
    for dirpath, dirnames, filenames in os.walk(target_root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        relative = Path(dirpath).relative_to(target_root)
        donor_dir = donor_root / relative
        donor_cache = donor_dir / "__pycache__"
        if not donor_cache.is_dir():
            continue
        try:
            cached = os.listdir(donor_cache)
        except OSError:
            continue
        target_cache = Path(dirpath) / "__pycache__"
        for name in filenames:
            if not name.endswith(".py"):
                continue
            stem = name[:-3]
            compiled = [
                c
                for c in cached
                if c.startswith(stem + ".")
                and c.endswith(".pyc")
                and c[len(stem) + 1 :].count(".") in (1, 2)
            ]
            if not compiled or not _same_file(Path(dirpath) / name, donor_dir / name):
                continue
            for pyc in compiled:
                destination = target_cache / pyc
                if destination.exists():
                    continue
                try:
                    target_cache.mkdir(exist_ok=True)
                    try:
                        os.link(donor_cache / pyc, destination)
                    except OSError:
                        shutil.copy2(donor_cache / pyc, destination)
                    seeded += 1
                except OSError:
                    continue
    return seeded


def _same_file(a: Path, b: Path) -> bool:
    try:
        first, second = a.stat(), b.stat()
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)
