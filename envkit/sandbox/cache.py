"""The content-addressed environment cache (``~/.cache/envkit``; ``ENVKIT_HOME`` overrides).

Layout::

    <root>/envs/<key>.json       the record: spec, env directory, tools, timings (published last)
    <root>/envs/<key>.lock       file lock held while <key> is being built
    <root>/envs/<key>.<build>/   an environment; trusted only while <key>.json names it
    <root>/wheels/<digest>/      the wheel of the running envkit (see selfwheel)

An environment is built in place in a fresh ``<key>.<build>`` directory (virtual environments
record their own path, so they cannot be moved after the build) and published by atomically
renaming its record into ``<key>.json``. A build that fails or is killed leaves a directory no
record names: nothing trusts it, and the next builder of that key (or ``prune``) removes it.
Concurrent builders of one key wait on ``<key>.lock``; the first builds, the others find its
record and share the environment. A record's modification time is its last use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from envkit._fs import atomic_write_text
from envkit.errors import EnvironmentBuildError
from envkit.sandbox.spec import EnvSpec

logger = logging.getLogger(__name__)

RECORD_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"
DEFAULT_LOCK_TIMEOUT = 1800.0


def default_cache_root() -> Path:
    """``$ENVKIT_HOME``, else ``$XDG_CACHE_HOME/envkit``, else ``~/.cache/envkit``."""
    home = os.environ.get("ENVKIT_HOME")
    if home:
        return Path(home).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "envkit").absolute()


@dataclass
class BuildInfo:
    """What a builder reports about a fresh environment (stored in the record)."""

    python: str = ""
    python_path: str = ""
    tools: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CacheRecord:
    """A published environment."""

    key: str
    path: Path
    spec: EnvSpec
    backend: str
    created: str
    last_used: float
    python: str = ""
    python_path: str = ""
    tools: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    record_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "env_dir": self.path.name,
            "backend": self.backend,
            "created": self.created,
            "python": self.python,
            "python_path": self.python_path,
            "spec": self.spec.to_dict(),
            "tools": dict(self.tools),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "extra": dict(self.extra),
        }


@dataclass
class CacheResult:
    """The environment for a spec and how it was obtained."""

    record: CacheRecord
    hit: bool
    reason: str
    waited: float = 0.0


class EnvCache:
    """Environments keyed by :attr:`EnvSpec.key`, built once and shared."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).absolute() if root is not None else default_cache_root()
        self.envs = self.root / "envs"

    # -- reading ---------------------------------------------------------------------------------

    def record_path(self, key: str) -> Path:
        return self.envs / f"{key}{RECORD_SUFFIX}"

    def lock_path(self, key: str) -> Path:
        return self.envs / f"{key}{LOCK_SUFFIX}"

    def _read_record(self, path: Path) -> CacheRecord | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            stat = path.stat()
            env_dir = str(data["env_dir"])
            if "/" in env_dir or env_dir.startswith("."):
                return None
            return CacheRecord(
                key=str(data["key"]),
                path=self.envs / env_dir,
                spec=EnvSpec.from_dict(data["spec"]),
                backend=str(data.get("backend", "")),
                created=str(data.get("created", "")),
                last_used=stat.st_mtime,
                python=str(data.get("python", "")),
                python_path=str(data.get("python_path", "")),
                tools=dict(data.get("tools") or {}),
                timings={k: float(v) for k, v in (data.get("timings") or {}).items()},
                extra=dict(data.get("extra") or {}),
                record_path=path,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.debug("ignoring unreadable cache record %s: %s", path, exc)
            return None

    def lookup(self, key: str) -> CacheRecord | None:
        """The published environment for ``key`` whose directory still exists."""
        record = self._read_record(self.record_path(key))
        if record is None or record.key != key or not record.path.is_dir():
            return None
        return record

    def records(self) -> list[CacheRecord]:
        """Every published environment, most recently used first."""
        if not self.envs.is_dir():
            return []
        result = []
        for path in self.envs.glob(f"*{RECORD_SUFFIX}"):
            record = self._read_record(path)
            if record is not None:
                result.append(record)
        return sorted(result, key=lambda r: r.last_used, reverse=True)

    def miss_reason(self, spec: EnvSpec) -> str:
        """Why ``spec`` is not cached: ``new spec``, or what changed against the closest one."""
        candidates = [r for r in self.records() if r.key != spec.key]
        if not candidates:
            return "new spec (no cached environments)"
        same_installer = [r for r in candidates if r.spec.installer == spec.installer]
        pool = same_installer or candidates

        closest = min(pool, key=lambda r: _spec_distance(r.spec, spec))
        changes = spec.differences(closest.spec)
        if not changes:
            return "new spec"
        return "; ".join(changes) + f" (closest cached environment: {closest.key})"

    # -- building --------------------------------------------------------------------------------

    def get_or_build(
        self,
        spec: EnvSpec,
        build: Callable[[Path], BuildInfo],
        *,
        check: Callable[[CacheRecord], str | None] | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> CacheResult:
        """The cached environment for ``spec``, built with ``build(directory)`` on a miss.

        ``check(record)`` returns why a cached environment cannot be used (its interpreter is
        gone, say), which turns the hit into a rebuild.
        """
        key = spec.key
        record = self.lookup(key)
        broken = check(record) if (record is not None and check is not None) else None
        if record is not None and broken is None:
            self._touch(record)
            return CacheResult(record, hit=True, reason="cached")
        reason = f"the cached environment is broken: {broken}" if broken else self.miss_reason(spec)
        self.envs.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with self.locked(key, lock_timeout):
            waited = time.perf_counter() - start
            record = self.lookup(key)
            if record is not None:
                broken_now = check(record) if check is not None else None
                if broken_now is None:
                    self._touch(record)
                    how = "checked again" if broken else "built by another process"
                    return CacheResult(
                        record,
                        hit=True,
                        reason=f"{how} while this one waited {waited:.1f}s",
                        waited=waited,
                    )
                self._unpublish(record)
            self._remove_unpublished(key)
            build_dir = self.envs / f"{key}.{uuid.uuid4().hex[:8]}"
            build_dir.mkdir()
            try:
                info = build(build_dir)
                record = CacheRecord(
                    key=key,
                    path=build_dir,
                    spec=spec,
                    backend=spec.installer,
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    last_used=time.time(),
                    python=info.python,
                    python_path=info.python_path,
                    tools=dict(info.tools),
                    timings=dict(info.timings),
                    extra=dict(info.extra),
                )
                record_path = self.record_path(key)
                atomic_write_text(record_path, json.dumps(record.to_dict(), indent=2) + "\n")
                record.record_path = record_path
            except BaseException:
                shutil.rmtree(build_dir, ignore_errors=True)
                raise
        return CacheResult(record, hit=False, reason=reason, waited=waited)

    @contextlib.contextmanager
    def locked(self, key: str, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
        """Hold ``key``'s lock: building it, and any later change envkit makes to a published
        environment (the bytecode compiled after a run, its manifest), happen under it, so that
        a process checking the environment under the lock never sees half a change.
        :class:`~envkit.errors.EnvironmentBuildError` after ``timeout`` seconds."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.lock_path(key)), timeout=timeout)
        try:
            lock.acquire()
        except Timeout:
            raise EnvironmentBuildError(
                f"another process has been building environment {key} for over {timeout:.0f}s; "
                f"wait for it, or remove {self.lock_path(key)} if no envkit process is running"
            )
        try:
            yield
        finally:
            lock.release()

    def _touch(self, record: CacheRecord) -> None:
        if record.record_path is not None:
            with contextlib.suppress(OSError):
                os.utime(record.record_path)

    def remove(self, record: CacheRecord) -> None:
        """Remove a published environment (under its key's lock)."""
        with self.locked(record.key, DEFAULT_LOCK_TIMEOUT):
            self._unpublish(record)

    def _unpublish(self, record: CacheRecord) -> None:
        """Remove a record (first) and its environment (then); caller holds the key's lock."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.record_path(record.key))
        shutil.rmtree(record.path, ignore_errors=True)

    def _remove_unpublished(self, key: str) -> list[Path]:
        """Delete build directories of ``key`` that no record names; caller holds the lock."""
        record = self.lookup(key)
        removed = []
        for path in self.envs.glob(f"{key}.*"):
            if path.suffix in (RECORD_SUFFIX, LOCK_SUFFIX) or not path.is_dir():
                continue
            if record is not None and path == record.path:
                continue
            logger.debug("removing unpublished environment %s", path)
            _remove_tree(path)
            removed.append(path)
        return removed

    # -- maintenance -----------------------------------------------------------------------------

    def prune(self, *, older_than_days: float | None = None, remove_all: bool = False) -> list[str]:
        """Remove unpublished leftovers, and environments unused for ``older_than_days``.

        Keys being built right now (their lock is held) are left alone. Returns what was
        removed, one line each.
        """
        if not self.envs.is_dir():
            return self._remove_bytecode() if remove_all else []
        from filelock import FileLock, Timeout

        removed: list[str] = []
        cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
        keys = {p.name.split(".", 1)[0] for p in self.envs.iterdir() if not p.name.startswith(".")}
        for key in sorted(keys):
            lock = FileLock(str(self.lock_path(key)), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                continue
            try:
                record = self.lookup(key)
                for path in self._remove_unpublished(key):
                    removed.append(f"{path.name} (unfinished build)")
                if record is None:
                    stale = self.record_path(key)
                    if stale.exists():
                        stale.unlink()
                        removed.append(f"{stale.name} (record of a missing environment)")
                elif remove_all or (cutoff is not None and record.last_used < cutoff):
                    self._unpublish(record)
                    days = (time.time() - record.last_used) / 86400
                    removed.append(
                        f"{key} ({record.backend}, python {record.python}, "
                        f"last used {days:.1f} days ago)"
                    )
            finally:
                lock.release()
        if remove_all:
            removed.extend(self._remove_bytecode())
        return removed

    def _remove_bytecode(self) -> list[str]:
        """``--all`` also empties the bytecode store (:mod:`envkit.sandbox.bytecode`)."""
        store = self.root / "bytecode"
        if not store.is_dir():
            return []
        count = sum(1 for p in store.rglob("*") if p.is_file())
        _remove_tree(store)
        return [f"bytecode store ({count} files)"]


def _spec_distance(a: EnvSpec, b: EnvSpec) -> tuple[int, int]:
    """How far apart two specs are: differing fields, then differing requirements."""
    da, db = a.to_dict(), b.to_dict()
    fields = sum(1 for name in da if da[name] != db.get(name))
    requirements = len(set(a.requirements) ^ set(b.requirements))
    return (fields, requirements)


def _remove_tree(path: Path, attempts: int = 20) -> None:
    """``rmtree`` that outlasts a straggler: a process of a killed build (an installer's own
    child, which the kill did not reach) may still be writing there for a moment."""
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.25)
    logger.warning("could not remove %s entirely; envkit env prune will retry", path)
