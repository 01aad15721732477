"""A wheel of the running envkit, so that a sandbox gets the same envkit as the host.

envkit is not on PyPI (and an unrelated project of the same name is), so an environment never
resolves ``envkit`` from an index: it installs this wheel by direct reference. The wheel is
built once per content digest of the running package (``<cache>/wheels/<digest>/``), written
directly (a zip with ``*.dist-info``; no build backend, no network), and published atomically.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from envkit._version import __version__

# envkit's runtime (pyproject.toml's dependencies). The wheel's metadata is the installed
# distribution's; a requirement the running code needs that it lacks (an editable install made
# before the requirement was added) is added from here, so a sandbox never misses it.
RUNTIME_REQUIREMENTS = ("PyYAML>=5.4", "packaging>=21", "cloudpickle>=2.0", "picklescan>=0.0.26")

_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class SelfWheel:
    """The wheel file and the digest that identifies this envkit build."""

    path: Path
    digest: str
    version: str = __version__

    @property
    def runner_id(self) -> str:
        return f"envkit-{self.version}+{self.digest}"

    def requirement(self, extras: str = "") -> str:
        return f"envkit{extras} @ {self.path.as_uri()}"


def package_dir() -> Path:
    import envkit

    return Path(envkit.__file__).resolve().parent


def _package_files(root: Path) -> list[tuple[str, Path]]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(_SKIP_SUFFIXES):
                continue
            path = Path(dirpath) / name
            arcname = "envkit/" + path.relative_to(root).as_posix()
            files.append((arcname, path))
    return files


def _metadata() -> tuple[str, str]:
    """(METADATA text, entry_points.txt text) of the running envkit distribution."""
    from importlib import metadata

    lines = ["Metadata-Version: 2.1", "Name: envkit", f"Version: {__version__}"]
    entry_points = ""
    try:
        dist = metadata.distribution("envkit")
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        meta = dist.metadata
        requires_python = meta["Requires-Python"]
        if requires_python:
            lines.append(f"Requires-Python: {requires_python}")
        for extra in meta.get_all("Provides-Extra") or []:
            lines.append(f"Provides-Extra: {extra}")
        declared = list(meta.get_all("Requires-Dist") or [])
        lines.extend(f"Requires-Dist: {req}" for req in [*declared, *_missing(declared)])
        entry_points = dist.read_text("entry_points.txt") or ""
    else:  # running from a source tree that was never installed
        lines.extend(f"Requires-Dist: {req}" for req in RUNTIME_REQUIREMENTS)
    return "\n".join(lines) + "\n", entry_points


def _missing(declared: list[str]) -> list[str]:
    """The runtime requirements ``declared`` (Requires-Dist lines) does not name."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names = set()
    for line in declared:
        try:
            names.add(canonicalize_name(Requirement(line).name))
        except InvalidRequirement:
            continue
    return [r for r in RUNTIME_REQUIREMENTS if canonicalize_name(Requirement(r).name) not in names]


def compute_digest() -> str:
    """A short digest of the running envkit's files and metadata."""
    digest = hashlib.sha256()
    for arcname, path in _package_files(package_dir()):
        digest.update(arcname.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    meta, entry_points = _metadata()
    digest.update(meta.encode())
    digest.update(entry_points.encode())
    return digest.hexdigest()[:16]


def _record_line(arcname: str, data: bytes) -> str:
    hashed = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={hashed},{len(data)}"


def build_self_wheel(cache_root: Path) -> SelfWheel:
    """The wheel of the running envkit under ``cache_root/wheels`` (built on first use)."""
    digest = compute_digest()
    target_dir = cache_root / "wheels" / digest
    name = f"envkit-{__version__}-py3-none-any.whl"
    target = target_dir / name
    if target.is_file():
        return SelfWheel(target, digest)
    target_dir.mkdir(parents=True, exist_ok=True)
    meta, entry_points = _metadata()
    dist_info = f"envkit-{__version__}.dist-info"
    wheel_text = "Wheel-Version: 1.0\nGenerator: envkit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    fd, tmp = tempfile.mkstemp(prefix=".envkit-", suffix=".whl", dir=target_dir)
    os.close(fd)
    try:
        records = []
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:

            def add(arcname: str, data: bytes) -> None:
                info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
                records.append(_record_line(arcname, data))

            for arcname, path in _package_files(package_dir()):
                add(arcname, path.read_bytes())
            add(f"{dist_info}/METADATA", meta.encode())
            add(f"{dist_info}/WHEEL", wheel_text.encode())
            if entry_points.strip():
                add(f"{dist_info}/entry_points.txt", entry_points.encode())
            add(f"{dist_info}/top_level.txt", b"envkit\n")
            record = "\n".join([*records, f"{dist_info}/RECORD,,"]) + "\n"
            info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, record)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return SelfWheel(target, digest)
