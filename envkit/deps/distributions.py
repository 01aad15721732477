"""Which installed distribution provides an imported module, decided from installed metadata.

Top-level import names come from ``importlib.metadata.packages_distributions()`` (built from the
``top_level.txt``/``RECORD`` files on Python 3.9, where that function does not exist). When
several distributions provide one import name (namespace packages such as ``google.*``), the
file that was actually imported decides, through the candidates' ``RECORD``. Modules that come
from an editable install are matched to the project directory its ``direct_url.json`` names.
No name is ever guessed, and no index is ever asked.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

from envkit.deps.provenance import INSTALL_EDITABLE, install_info

# Owner kinds.
STDLIB = "stdlib"
DIST = "dist"
LOCAL = "local"  # a file that no installed distribution owns (a script, a source tree)
NONE = "none"  # no file: a namespace package, a builtin, a C-level alias
# Modules a library writes to a temporary directory and imports while it runs: its own, never
# a requirement (torch.distributed.nn's RemoteModule template, imported with torch.distributed)
RUNTIME_GENERATED = frozenset({"_remote_module_non_scriptable"})


@dataclass(frozen=True)
class Owner:
    kind: str
    dist: str | None = None  # canonical distribution name when kind == DIST


def canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def _norm(path: str) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def _packages_distributions() -> Mapping[str, list[str]]:
    """Import name -> distribution names (``importlib.metadata.packages_distributions``)."""
    if sys.version_info >= (3, 11):
        return importlib_metadata.packages_distributions()
    # Python 3.9 has none, and 3.10's reads only top_level.txt, which distributions built
    # without setuptools (flit: cloudpickle; hatchling...) lack: the same mapping, from
    # top_level.txt or else the RECORD file names, as 3.11's does.
    result: dict[str, list[str]] = {}
    for dist in importlib_metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        for top in _top_level_names(dist):
            result.setdefault(top, []).append(name)
    return result


def _top_level_names(dist: Any) -> set[str]:
    declared = dist.read_text("top_level.txt")
    if declared:
        return {line.strip() for line in declared.split() if line.strip()}
    names: set[str] = set()
    for file in dist.files or ():
        parts = file.parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".egg-info")):
            continue
        if len(parts) > 1:
            names.add(parts[0])
        else:
            import inspect

            module = inspect.getmodulename(parts[0])
            if module:
                names.add(module)
    return {n for n in names if "." not in n}


class DistributionIndex:
    """A snapshot of the distributions installed on ``sys.path``, for module -> owner lookups."""

    def __init__(self) -> None:
        self.top_level: dict[str, list[str]] = {}
        for top, names in _packages_distributions().items():
            seen: list[str] = []
            for name in names:
                c = canonical(name)
                if c not in seen:
                    seen.append(c)
            self.top_level[top] = seen
        self._dists: dict[str, Any] = {}
        self._records: dict[str, set[str]] = {}
        self._locations: dict[int, str] = {}
        self._editables: list[tuple[str, str]] | None = None
        paths = sysconfig.get_paths()
        self._stdlib_dirs = tuple(
            _norm(p) + os.sep for p in {paths.get("stdlib"), paths.get("platstdlib")} if p
        )
        site_dirs = {paths.get("purelib"), paths.get("platlib")}
        site_dirs.update(p for p in sys.path if p and "-packages" in p)
        self._site_dirs = tuple(_norm(p) + os.sep for p in site_dirs if p)
        self._stdlib_names = frozenset(
            set(sys.builtin_module_names) | set(getattr(sys, "stdlib_module_names", ()))
        )

    # -- distributions --

    def distribution(self, name: str) -> Any | None:
        """The installed ``Distribution`` for a canonical name, or None."""
        key = canonical(name)
        if key not in self._dists:
            try:
                self._dists[key] = importlib_metadata.distribution(key)
            except importlib_metadata.PackageNotFoundError:
                try:
                    self._dists[key] = importlib_metadata.distribution(name)
                except importlib_metadata.PackageNotFoundError:
                    self._dists[key] = None
        return self._dists[key]

    def version(self, name: str) -> str | None:
        dist = self.distribution(name)
        return str(dist.version) if dist is not None else None

    def _location(self, dist: Any) -> str:
        key = id(dist)
        if key not in self._locations:
            self._locations[key] = _norm(str(dist.locate_file(""))) + os.sep
        return self._locations[key]

    def _record(self, name: str) -> set[str]:
        if name not in self._records:
            dist = self.distribution(name)
            files: set[str] = set()
            if dist is not None:
                base = self._location(dist)
                for file in dist.files or ():
                    files.add(os.path.normcase(os.path.normpath(os.path.join(base, str(file)))))
            self._records[name] = files
        return self._records[name]

    def _editable_projects(self) -> list[tuple[str, str]]:
        """(project directory, canonical name) of every editable install, deepest first."""
        if self._editables is None:
            found: list[tuple[str, str]] = []
            for dist in importlib_metadata.distributions():
                info = install_info(dist)
                if info.kind == INSTALL_EDITABLE and info.editable_dir:
                    name = dist.metadata["Name"]
                    if name:
                        found.append((_norm(info.editable_dir) + os.sep, canonical(name)))
            self._editables = sorted(found, key=lambda item: -len(item[0]))
        return self._editables

    # -- modules --

    def is_stdlib(self, module: str, file: str | None) -> bool:
        top = module.partition(".")[0]
        if top in self._stdlib_names:
            return True
        if file is None:
            return False
        path = _norm(file)
        return path.startswith(self._stdlib_dirs) and not path.startswith(self._site_dirs)

    def owner(self, module: str, file: str | None) -> Owner:
        """Who provides ``module``, imported from ``file``."""
        if self.is_stdlib(module, file):
            return Owner(STDLIB)
        # A relative __file__ names no file (torch.ops and torch.classes say "_ops.py")
        if file is None or not os.path.isabs(file) or module in RUNTIME_GENERATED:
            return Owner(NONE)
        path = _norm(file)
        top = module.partition(".")[0]
        name = self._owner_by_import_name(top, path)
        if name is None:
            name = self._owner_editable(path)
        if name is None:
            name = self._owner_in_site_packages(top, path)
        return Owner(LOCAL) if name is None else Owner(DIST, name)

    def _owner_by_import_name(self, top: str, path: str) -> str | None:
        """The distribution that declares import name ``top`` and holds ``path``."""
        candidates = self.top_level.get(top, [])
        if len(candidates) == 1:
            dist = self.distribution(candidates[0])
            if dist is not None and path.startswith(self._location(dist)):
                return candidates[0]
            return None
        return self._owner_by_record(candidates, path)

    def _owner_by_record(self, names: Iterable[str], path: str) -> str | None:
        """The first of ``names`` whose RECORD lists ``path``."""
        return next((name for name in names if path in self._record(name)), None)

    def _owner_editable(self, path: str) -> str | None:
        """The editable install whose project directory holds ``path``."""
        return next(
            (name for project, name in self._editable_projects() if path.startswith(project)), None
        )

    def _owner_in_site_packages(self, top: str, path: str) -> str | None:
        """The distribution whose RECORD lists ``path``, a file in site-packages."""
        site = next((d for d in self._site_dirs if path.startswith(d)), None)
        if site is None:
            return None
        # In site-packages under another name (a C extension registered as "_foo"): the
        # file's first directory is the import root that owns it.
        first = path[len(site) :].split(os.sep, 1)[0]
        root = first.split(".", 1)[0]
        name = self._owner_by_record(self.top_level.get(root, []) if root != top else [], path)
        if name is None:
            every = (candidate for names in self.top_level.values() for candidate in names)
            name = self._owner_by_record(every, path)
        return name


# One snapshot per process, refreshed when sys.path or a directory on it changes.
_lock = threading.Lock()
_cached: tuple[tuple[Any, ...], DistributionIndex] | None = None


def _fingerprint() -> tuple[Any, ...]:
    stamps: list[Any] = []
    for entry in sys.path:
        try:
            stamps.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            stamps.append((entry, None))
    return tuple(stamps)


def current_index() -> DistributionIndex:
    """The (cached) index of this interpreter's installed distributions."""
    global _cached
    key = _fingerprint()
    with _lock:
        if _cached is None or _cached[0] != key:
            importlib_metadata_cache_clear()
            _cached = (key, DistributionIndex())
        return _cached[1]


def importlib_metadata_cache_clear() -> None:
    """Forget cached directory listings, so that packages installed since are seen."""
    import importlib

    importlib.invalidate_caches()


def warm_in_background() -> threading.Thread:
    """Build the index in a thread (while the capture subprocess runs)."""
    thread = threading.Thread(target=current_index, name="envkit-dist-index", daemon=True)
    thread.start()
    return thread


def requires(index: DistributionIndex, name: str) -> set[str]:
    """Canonical names a distribution requires unconditionally (no extra) on this platform."""
    from packaging.requirements import InvalidRequirement, Requirement

    dist = index.distribution(name)
    result: set[str] = set()
    if dist is None:
        return result
    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None:
            try:
                if not req.marker.evaluate({"extra": ""}):
                    continue
            except Exception:
                continue
        result.add(canonical(req.name))
    return result


def names_of(owners: Iterable[Owner]) -> set[str]:
    return {o.dist for o in owners if o.kind == DIST and o.dist}
