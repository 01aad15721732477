"""Filesystem helpers: atomic directory publishing and paths that must stay inside a root."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from envkit.errors import ModelExistsError, UnsafePathError


def is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a sibling temporary directory that replaces ``target`` on success.

    On any exception the temporary directory is removed and ``target`` is untouched, so a
    failed save leaves nothing behind. The final step is a rename on the same filesystem.
    """
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise ModelExistsError(f"{target} exists and is not a directory; choose another path")
    if is_nonempty_dir(target) and not overwrite:
        raise ModelExistsError(
            f"{target} already exists and is not empty; pass overwrite=True to replace it, "
            "or choose another path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_siblings(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        yield staging
        publish_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists here (when in doubt: yes)."""
    if pid == os.getpid() or sys.platform == "win32":  # there, signal 0 is CTRL_C_EVENT
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or we cannot tell: keep it
    return True


def remove_abandoned_siblings(target: Path) -> None:
    """Remove ``.NAME.tmp-<pid>-*`` / ``.NAME.old-<pid>-*`` left by a process that was killed.

    Only directories whose recorded process no longer exists are removed, so a concurrent
    save into the same parent directory is never disturbed.
    """
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)-")
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        match = pattern.match(sibling.name)
        if match and sibling.is_dir() and not process_alive(int(match.group(1))):
            shutil.rmtree(sibling, ignore_errors=True)


def publish_directory(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``, replacing an existing ``target`` as atomically as we can.

    ``os.replace`` cannot replace a non-empty directory, so an existing target is first renamed
    aside (one rename), then the staged directory is renamed in (a second rename), then the old
    one is deleted. A reader never sees a half-written directory.
    """
    os.chmod(staging, 0o777 & ~_umask())
    if target.exists():
        aside = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.replace(target, aside)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(aside, target)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staging, target)


def resolve_inside(root: str | os.PathLike[str], relative: str) -> Path:
    """Resolve ``relative`` under ``root``; refuse absolute paths, ``..`` and escaping symlinks."""
    root_path = Path(root).resolve()
    if os.path.isabs(relative):
        raise UnsafePathError(
            f"the model refers to an absolute path {relative!r}; model files must be relative "
            "to the model directory"
        )
    try:
        candidate = (root_path / relative).resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        loop = isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP
        why = "it is a symlink loop" if loop else getattr(exc, "strerror", None) or str(exc)
        raise UnsafePathError(
            f"the model refers to {relative!r}, which cannot be resolved: {why}"
        ) from None
    if candidate != root_path and root_path not in candidate.parents:
        raise UnsafePathError(
            f"the model refers to {relative!r}, which resolves outside the model directory "
            f"({candidate}); refusing to follow it"
        )
    return candidate


def check_tree_inside(root: str | os.PathLike[str]) -> None:
    """Refuse a model directory that contains symlinks pointing outside of it."""
    root_path = Path(root).resolve()
    for dirpath, dirnames, filenames in os.walk(root_path):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                resolve_inside(root_path, os.path.relpath(path, root_path))


def directory_size(path: str | os.PathLike[str]) -> int:
    """Total size in bytes of the regular files under ``path`` (symlinks not followed)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            file_path = os.path.join(dirpath, name)
            if not os.path.islink(file_path):
                total += os.path.getsize(file_path)
    return total


def copy_into(source: str | os.PathLike[str], dest_dir: Path) -> str:
    """Copy a file or directory into ``dest_dir``; returns the copied entry's name.

    Refused with a :class:`UsageError`: a directory that contains ``dest_dir`` (it would copy
    into itself), and a symlink inside a directory that points outside of it (it would pull
    unrelated files, such as ``/etc``, into the model). Links within the tree are copied as
    the files they point to.
    """
    from envkit.errors import UsageError

    source_path = Path(source)
    if not source_path.exists():
        raise UsageError(f"{source_path} does not exist")
    if source_path.is_dir():
        real = source_path.resolve()
        dest_real = dest_dir.resolve() if dest_dir.exists() else dest_dir.parent.resolve()
        if dest_real == real or real in dest_real.parents:
            raise UsageError(
                f"{source_path} contains the model being saved ({dest_real}); save the model "
                "outside of it, or copy only the files you need"
            )
        for dirpath, dirnames, filenames in os.walk(source_path):
            for name in dirnames + filenames:
                entry = Path(dirpath) / name
                if entry.is_symlink():
                    target = entry.resolve()
                    if target != real and real not in target.parents:
                        raise UsageError(
                            f"{entry} is a link to {target}, outside {source_path}; copy the "
                            "file in or remove the link"
                        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / source_path.name
    if source_path.is_dir():
        shutil.copytree(source_path, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(source_path, dest)
    return source_path.name


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
