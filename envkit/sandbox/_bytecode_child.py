"""Bytecode for a cached environment, run by that environment's own Python (never by a model).

    python -I _bytecode_child.py seed STORE             # write the bytecode the store has
    python -I _bytecode_child.py compile STORE < FILES  # compile FILES (seeding what it can)

The store holds, per interpreter (cache tag and magic number), the code object of every
source file envkit compiled, keyed by the SHA-256 of the source: a new environment that
installs the same file gets its bytecode without compiling it again, and a source whose
content differs never matches. An index line per entry (relative path, hash, entry size and
mtime) names what to look for and lets a modified entry be ignored. Prints a JSON summary.
This file imports nothing of envkit: it runs in the model's environment.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import sys
import sysconfig
from concurrent.futures import ProcessPoolExecutor

INDEX = "index.tsv"
# (source, store directory, compile when the store lacks it, the index entry for the source)
Job = tuple[str, str, bool, "tuple[str, int, int] | None"]


def _store_dir(store: str) -> str:
    tag = f"{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}"
    return os.path.join(store, tag)


def _site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return sorted({os.path.join(paths["purelib"], ""), os.path.join(paths["platlib"], "")})


def _relative(source: str) -> str | None:
    for site in _site_dirs():
        if source.startswith(site):
            return source[len(site) :]
    return None


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _header(stat: os.stat_result) -> bytes:
    """The header importlib writes for a timestamp-checked ``.pyc``."""
    return (
        importlib.util.MAGIC_NUMBER
        + (0).to_bytes(4, "little")
        + (int(stat.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
        + (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    )


def _read_index(store_dir: str) -> dict[str, tuple[str, int, int]]:
    """relative path -> (source hash, entry size, entry mtime_ns); the last line wins."""
    entries: dict[str, tuple[str, int, int]] = {}
    try:
        with open(os.path.join(store_dir, INDEX), encoding="utf-8") as handle:
            for line in handle:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 4 and parts[2].isdigit() and parts[3].isdigit():
                    entries[parts[0]] = (parts[1], int(parts[2]), int(parts[3]))
    except OSError:
        pass
    return entries


def _entry_path(store_dir: str, digest: str) -> str:
    return os.path.join(store_dir, digest[:2], digest)


def _from_store(store_dir: str, digest: str, known: tuple[str, int, int] | None) -> bytes | None:
    """The stored code for ``digest`` when the index vouches for the entry as written."""
    if known is None or known[0] != digest:
        return None
    path = _entry_path(store_dir, digest)
    try:
        stat = os.stat(path)
        if (stat.st_size, stat.st_mtime_ns) != known[1:]:
            return None  # changed since envkit wrote it: not trusted
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _one(job: Job) -> tuple[str, str | None]:
    """(outcome, index line or None) for one source file."""
    source, store_dir, compile_missing, known = job
    target = importlib.util.cache_from_source(source)
    if os.path.exists(target):
        return "present", None
    try:
        with open(source, "rb") as handle:
            data = handle.read()
        stat = os.stat(source)
    except OSError:
        return "failed", None
    digest = hashlib.sha256(data).hexdigest()
    body = _from_store(store_dir, digest, known)
    if body is not None:
        _write_atomic(target, _header(stat) + body)
        return "seeded", None
    if not compile_missing:
        return "absent", None
    try:
        body = marshal.dumps(compile(data, source, "exec", dont_inherit=True))
    except (SyntaxError, ValueError):
        return "failed", None
    _write_atomic(target, _header(stat) + body)
    return "compiled", _store(store_dir, digest, body, source)


def _store(store_dir: str, digest: str, body: bytes, source: str) -> str | None:
    relative = _relative(source)
    if relative is None or "\t" in relative or "\n" in relative:
        return None
    path = _entry_path(store_dir, digest)
    _write_atomic(path, body)
    os.chmod(path, 0o444)
    stat = os.stat(path)
    return f"{relative}\t{digest}\t{stat.st_size}\t{stat.st_mtime_ns}\n"


def _run(jobs: list[Job]) -> list[tuple[str, str | None]]:
    workers = min(os.cpu_count() or 1, 4, max(1, len(jobs) // 50))
    if workers <= 1:
        return [_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_one, jobs, chunksize=max(1, len(jobs) // (workers * 4))))


def main(argv: list[str]) -> int:
    mode, store = argv[0], argv[1]
    store_dir = _store_dir(store)
    index = _read_index(store_dir)
    if mode == "seed":
        sources = [os.path.join(site, rel) for rel in index for site in _site_dirs()]
        sources = [s for s in sources if os.path.isfile(s)]
    else:
        sources = [line.strip() for line in sys.stdin if line.strip().endswith(".py")]
    missing = [s for s in sources if not os.path.exists(importlib.util.cache_from_source(s))]
    jobs = [(s, store_dir, mode == "compile", index.get(_relative(s) or "")) for s in missing]
    results = _run(jobs) + [("present", None)] * (len(sources) - len(missing))
    lines = "".join(line for _, line in results if line)
    if lines:
        os.makedirs(store_dir, exist_ok=True)
        with open(os.path.join(store_dir, INDEX), "a", encoding="utf-8") as handle:
            handle.write(lines)
    counts: dict[str, int] = {}
    for outcome, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
