"""Temporary directories that name the process that made them, so that leftovers of a killed
process (SIGKILL runs no cleanup) are recognised and removed by the next envkit run.

``make_tempdir("run")`` creates ``$TMPDIR/envkit-run-<pid>-XXXXXXXX``; before doing so it
removes every ``envkit-<kind>-<pid>-*`` directory of this user whose process no longer
exists. A directory whose process is alive (or whose owner is another user) is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from envkit._fs import process_alive

logger = logging.getLogger(__name__)

__all__ = ["make_tempdir", "remove_stale_tempdirs", "tempdir"]

# The non-root user of the images envkit builds. As root, the docker backend hands a run's
# writable directories to it for the run, so a directory a killed envkit left may belong to it.
# Defined here, in the layer below the docker package, which takes it from here.
CONTAINER_UID = 10001

_NAME = re.compile(r"^envkit-([a-z]+)-(\d+)-[A-Za-z0-9_]+$")


def make_tempdir(kind: str) -> Path:
    """A new private directory ``envkit-<kind>-<pid>-XXXXXXXX`` in the temporary directory
    (stale ones of dead processes are removed first). The caller removes it."""
    remove_stale_tempdirs()
    return Path(tempfile.mkdtemp(prefix=f"envkit-{kind}-{os.getpid()}-"))


@contextlib.contextmanager
def tempdir(kind: str) -> Iterator[Path]:
    """:func:`make_tempdir`, removed when the block ends."""
    path = make_tempdir(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_tempdirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove this user's ``envkit-<kind>-<pid>-*`` directories whose process is gone."""
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    # As root, the docker backend hands a run's directory to the container's user for the
    # run: one a killed envkit left is still ours to remove.
    owners = {uid, CONTAINER_UID} if uid == 0 else {uid}
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if uid is not None and entry.stat(follow_symlinks=False).st_uid not in owners:
                continue
        except OSError:
            continue
        if process_alive(int(match.group(2))):
            continue
        logger.debug("removing %s, left by a process that no longer exists", entry.path)
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed
