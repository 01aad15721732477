"""Tiny wheels whose dependency graph the tests control (``ektest-*``), built in the session.

A test that asserts on transitive capture, pins, overrides or provenance uses these instead of
a real library, so that a new release on PyPI (python-dateutil 4 dropping six, say) can never
turn it red. Each wheel is written by :func:`build_wheel` (a zip with ``*.dist-info``, as the
wheel format specifies); :func:`install` installs them with uv, offline, from the
``--find-links`` directory, exactly as a user's installer would.

The graph (import name in parentheses):

- ``ektest-leaf`` 1.0.0 and 2.0.0 (``ekleaf``): no dependencies, and no ``top_level.txt``
  (like wheels built by flit or hatchling: the RECORD says which modules it owns);
- ``ektest-top`` 1.0.0 (``ektop``): requires ``ektest-leaf`` and imports it when imported, as
  python-dateutil 2.x did with six;
- ``ektest-top`` 2.0.0 (``ektop``): a new release that dropped ``ektest-leaf`` (as
  python-dateutil 4.0 dropped six);
- ``ektest-ns-alpha`` / ``ektest-ns-beta`` 1.0.0: the two halves of the namespace package
  ``ekns`` (``ekns.alpha``, ``ekns.beta``), without ``ekns/__init__.py``.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# (distribution, version) -> files (path in the wheel -> source), requirements, top_level.txt
_GRAPH: dict[tuple[str, str], tuple[dict[str, str], tuple[str, ...], tuple[str, ...] | None]] = {
    ("ektest-leaf", "1.0.0"): ({"ekleaf/__init__.py": "VERSION = '1.0.0'\n"}, (), None),
    ("ektest-leaf", "2.0.0"): ({"ekleaf/__init__.py": "VERSION = '2.0.0'\n"}, (), None),
    ("ektest-top", "1.0.0"): (
        {"ektop/__init__.py": "import ekleaf\n\nVERSION = '1.0.0'\nLEAF = ekleaf.VERSION\n"},
        ("ektest-leaf>=1",),
        ("ektop",),
    ),
    ("ektest-top", "2.0.0"): (
        {"ektop/__init__.py": "VERSION = '2.0.0'\nLEAF = None\n"},
        (),
        ("ektop",),
    ),
    ("ektest-ns-alpha", "1.0.0"): ({"ekns/alpha/__init__.py": "NAME = 'alpha'\n"}, (), None),
    ("ektest-ns-beta", "1.0.0"): ({"ekns/beta/__init__.py": "NAME = 'beta'\n"}, (), None),
}


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(
    target_dir: Path,
    name: str,
    version: str,
    files: dict[str, str],
    *,
    requires: tuple[str, ...] = (),
    top_level: tuple[str, ...] | None = None,
) -> Path:
    """Write ``name-version-py3-none-any.whl`` into ``target_dir`` and return its path."""
    stem = name.replace("-", "_")
    dist_info = f"{stem}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    contents = {path: text.encode() for path, text in files.items()}
    contents[f"{dist_info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    contents[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: envkit-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if top_level is not None:
        contents[f"{dist_info}/top_level.txt"] = ("\n".join(top_level) + "\n").encode()
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in contents.items()]
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = target_dir / f"{stem}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in contents.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, zipfile.ZIP_DEFLATED)
    return wheel


@dataclass
class LocalIndex:
    """A ``--find-links`` directory of ektest wheels."""

    directory: Path
    wheels: list[Path] = field(default_factory=list)

    def install(self, target: Path, *requirements: str) -> Path:
        """Install ``requirements`` (offline, from this directory) into the site directory
        ``target`` with uv, and return ``target``; put it on ``sys.path`` to use it."""
        proc = subprocess.run(
            [
                sys.executable, "-m", "uv", "pip", "install", "--quiet",
                "--python", sys.executable,
                "--target", str(target),
                "--no-index", "--find-links", str(self.directory),
                *requirements,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"installing {requirements} failed:\n{proc.stderr[-2000:]}")
        return target


def build_index(directory: Path, releases: list[tuple[str, str]] | None = None) -> LocalIndex:
    """Build the wheels of ``releases`` (default: the whole graph) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    index = LocalIndex(directory)
    for key in releases or list(_GRAPH):
        files, requires, top_level = _GRAPH[key]
        index.wheels.append(
            build_wheel(directory, *key, files, requires=requires, top_level=top_level)
        )
    return index
