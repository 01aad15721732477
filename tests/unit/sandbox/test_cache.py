"""The environment cache: publish by record, miss reasons, locking, failed builds, prune."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from envkit.errors import EnvironmentBuildError
from envkit.sandbox.cache import BuildInfo, EnvCache, default_cache_root
from envkit.sandbox.spec import EnvSpec

SPEC = EnvSpec("3.11.7", ("numpy==2.0.0", "pandas==2.2.0"), installer="uv", runner="r1")


def _builder(calls: list[Path], delay: float = 0.0):
    def build(directory: Path) -> BuildInfo:
        calls.append(directory)
        time.sleep(delay)
        (directory / "bin").mkdir()
        (directory / "bin" / "python").write_text("")
        return BuildInfo(python="3.11.7", tools={"uv": "test"}, timings={"install": delay})

    return build


def test_cache_root_follows_envkit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ENVKIT_HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home"
    monkeypatch.delenv("ENVKIT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "envkit"


def test_miss_then_hit_with_a_record(tmp_path):
    cache = EnvCache(tmp_path)
    calls: list[Path] = []
    first = cache.get_or_build(SPEC, _builder(calls))
    assert not first.hit and first.reason == "new spec (no cached environments)"
    record = json.loads((tmp_path / "envs" / f"{SPEC.key}.json").read_text())
    assert record["spec"] == SPEC.to_dict() and record["tools"] == {"uv": "test"}
    assert record["env_dir"] == first.record.path.name
    second = cache.get_or_build(SPEC, _builder(calls))
    assert second.hit and second.reason == "cached" and second.record.path == first.record.path
    assert len(calls) == 1


def test_a_miss_says_what_changed_against_the_closest_spec(tmp_path):
    cache = EnvCache(tmp_path)
    cache.get_or_build(SPEC, _builder([]))
    far = EnvSpec("3.9.18", ("flask",), installer="uv", runner="r1")
    cache.get_or_build(far, _builder([]))
    changed = EnvSpec("3.11.7", ("numpy==2.1.0", "pandas==2.2.0"), installer="uv", runner="r1")
    result = cache.get_or_build(changed, _builder([]))
    assert result.reason.startswith(
        "requirements changed: removed numpy==2.0.0; added numpy==2.1.0 (closest cached"
    )


def test_a_failed_build_leaves_nothing(tmp_path):
    cache = EnvCache(tmp_path)

    def broken(directory: Path) -> BuildInfo:
        (directory / "half-installed").write_text("")
        raise EnvironmentBuildError("install failed")

    with pytest.raises(EnvironmentBuildError):
        cache.get_or_build(SPEC, broken)
    assert cache.lookup(SPEC.key) is None
    assert [p for p in (tmp_path / "envs").iterdir() if p.suffix != ".lock"] == []


def test_an_unpublished_directory_is_never_trusted_and_is_cleaned_up(tmp_path):
    cache = EnvCache(tmp_path)
    leftover = tmp_path / "envs" / f"{SPEC.key}.deadbeef"  # as a killed build leaves it
    (leftover / "bin").mkdir(parents=True)
    calls: list[Path] = []
    result = cache.get_or_build(SPEC, _builder(calls))
    assert not result.hit and calls == [result.record.path]
    assert not leftover.exists()


def test_a_broken_cached_environment_is_rebuilt(tmp_path):
    cache = EnvCache(tmp_path)
    first = cache.get_or_build(SPEC, _builder([]))

    def check(record):
        return None if (record.path / "bin" / "python").exists() else "python is gone"

    (first.record.path / "bin" / "python").unlink()
    second = cache.get_or_build(SPEC, _builder([]), check=check)
    assert not second.hit and second.reason == "the cached environment is broken: python is gone"
    assert not first.record.path.exists()


def test_concurrent_builders_build_once(tmp_path):
    calls: list[Path] = []
    results = []

    def worker():
        results.append(EnvCache(tmp_path).get_or_build(SPEC, _builder(calls, delay=0.5)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert sorted(r.hit for r in results) == [False, True, True, True]
    assert all("built by another process" in r.reason for r in results if r.hit)


def test_prune(tmp_path):
    cache = EnvCache(tmp_path)
    old = cache.get_or_build(SPEC, _builder([])).record
    other = EnvSpec("3.12.1", ("flask",), installer="uv")
    fresh = cache.get_or_build(other, _builder([])).record
    long_ago = time.time() - 10 * 86400
    os.utime(cache.record_path(old.key), (long_ago, long_ago))
    leftover = tmp_path / "envs" / f"{other.key}.cafebabe"
    leftover.mkdir()
    removed = cache.prune(older_than_days=5)
    assert any(line.startswith(old.key) for line in removed)
    assert any("unfinished build" in line for line in removed)
    assert cache.lookup(old.key) is None and not old.path.exists() and not leftover.exists()
    assert cache.lookup(fresh.key) is not None
    assert cache.prune(remove_all=True) and cache.records() == []


def test_concurrent_manifest_writers_never_collide(tmp_path):
    """Two processes compiling after a run both rewrote the manifest through one fixed
    temporary name; one of them failed with FileNotFoundError (seen in CI)."""
    from envkit.sandbox.manifest import difference, record_manifest

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "m.py").write_text("x = 1\n")
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(40):
                record_manifest(tmp_path)
        except BaseException as error:  # the test reports any failure
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert difference(tmp_path) is None
    assert [p.name for p in (tmp_path / ".envkit").iterdir()] == ["manifest.json"]


def test_a_change_made_under_the_lock_is_rechecked_not_rebuilt(tmp_path):
    """envkit changes a published environment (bytecode after a run) under its key's lock; a
    process whose unlocked check caught it half-way waits for the lock and checks again."""
    cache = EnvCache(tmp_path)
    calls: list[Path] = []
    first = cache.get_or_build(SPEC, _builder(calls))
    halfway = threading.Event()
    done = threading.Event()

    def change() -> None:
        with cache.locked(SPEC.key):
            halfway.set()
            time.sleep(0.5)
            done.set()

    changer = threading.Thread(target=change)
    changer.start()
    halfway.wait(10)
    result = cache.get_or_build(
        SPEC, _builder(calls), check=lambda record: None if done.is_set() else "half-way"
    )
    changer.join(10)
    assert result.hit and result.reason.startswith("checked again while this one waited")
    assert result.record.path == first.record.path and len(calls) == 1


def test_a_held_lock_times_out_with_a_readable_error(tmp_path):
    cache = EnvCache(tmp_path)
    cache.envs.mkdir(parents=True)
    with cache.locked(SPEC.key):
        errors: list[BaseException] = []

        def other() -> None:
            try:
                with cache.locked(SPEC.key, timeout=0.2):
                    pass
            except EnvironmentBuildError as error:
                errors.append(error)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
    assert len(errors) == 1 and "another process" in str(errors[0])
