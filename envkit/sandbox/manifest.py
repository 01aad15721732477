"""What a cached environment held when envkit last wrote it: every file's size and
modification time, checked on every cache hit (fast: no file is read).

An environment changed since (a file edited or truncated in place, a ``sitecustomize.py`` or
``.pth`` planted, a file removed) is never reused: the cache rebuilds it and says why. The
manifest lives in the environment (``.envkit/manifest.json``); envkit rewrites it after its
own changes (the bytecode it compiles after a run), never the model, to which the environment
is read-only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["MANIFEST", "difference", "record_manifest", "scan", "verify_records"]

MANIFEST = Path(".envkit") / "manifest.json"
_SHOWN = 3  # changed files named in a reason


def scan(root: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of every file and symlink under ``root``."""
    found: dict[str, tuple[int, int]] = {}
    skip = str(MANIFEST)
    temporary = str(MANIFEST.parent / f".{MANIFEST.name}.")  # atomic_write_text's sibling
    pending = [("", os.fspath(root))]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                relative = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append((relative + os.sep, entry.path))
                elif relative != skip and not relative.startswith(temporary):
                    stat = entry.stat(follow_symlinks=False)
                    found[relative] = (stat.st_size, stat.st_mtime_ns)
    return found


def record_manifest(root: Path) -> None:
    """Write the manifest of ``root`` as it is now (after a build, or envkit's own change).

    The caller holds the environment's cache lock, so that no other process changes the
    environment between the scan and the write; the write itself is atomic (a unique
    temporary sibling), so a reader never sees half a manifest."""
    from envkit._fs import atomic_write_text

    entries = {path: list(value) for path, value in sorted(scan(root).items())}
    atomic_write_text(root / MANIFEST, json.dumps(entries))


def difference(root: Path) -> str | None:
    """Why ``root`` no longer is what its manifest records (``None`` when it is)."""
    try:
        recorded = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "it has no readable manifest"
    now = scan(root)
    changed = [p for p, v in now.items() if p in recorded and tuple(recorded[p]) != v]
    added = [p for p in now if p not in recorded]
    removed = [p for p in recorded if p not in now]
    if not (changed or added or removed):
        return None
    parts = []
    for label, paths in (("changed", changed), ("added", added), ("removed", removed)):
        if paths:
            shown = ", ".join(sorted(paths)[:_SHOWN])
            more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
            parts.append(f"{label} {shown}{more}")
    return "; ".join(parts)


def verify_records(root: Path) -> list[str]:
    """Files of ``root`` whose content no longer matches the sha256 its distribution's
    ``RECORD`` lists (slow: every file is read; ``envkit env verify``)."""
    import base64
    import csv
    import hashlib

    bad: list[str] = []
    for record in sorted(root.glob("lib/python*/site-packages/*.dist-info/RECORD")):
        site = record.parent.parent
        with open(record, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        for row in rows:
            if len(row) < 2 or not row[1].startswith("sha256="):
                continue
            path = (site / row[0]).resolve()
            try:
                digest = hashlib.sha256(path.read_bytes()).digest()
            except OSError:
                bad.append(f"{os.path.relpath(path, root)} (missing)")
                continue
            encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if encoded != row[1][len("sha256=") :]:
                bad.append(f"{os.path.relpath(path, root)} (content differs from RECORD)")
    return bad
