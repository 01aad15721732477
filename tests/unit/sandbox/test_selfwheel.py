"""The wheel of the running envkit: complete, reproducible, keyed by content."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import zipfile

from envkit._version import __version__
from envkit.sandbox.selfwheel import build_self_wheel, compute_digest, package_dir


def test_the_wheel_holds_the_package_and_valid_metadata(tmp_path):
    wheel = build_self_wheel(tmp_path)
    assert wheel.path.name == f"envkit-{__version__}-py3-none-any.whl"
    assert wheel.path.parent.name == wheel.digest == compute_digest()
    with zipfile.ZipFile(wheel.path) as archive:
        names = set(archive.namelist())
        assert "envkit/__init__.py" in names and "envkit/sandbox/runner.py" in names
        assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)
        dist_info = f"envkit-{__version__}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        assert "Name: envkit" in metadata and f"Version: {__version__}" in metadata
        assert "Requires-Dist: " in metadata
        record = list(csv.reader(io.StringIO(archive.read(f"{dist_info}/RECORD").decode())))
        for name, digest, _size in record:
            if name.endswith("RECORD"):
                continue
            expected = base64.urlsafe_b64encode(hashlib.sha256(archive.read(name)).digest()).rstrip(
                b"="
            )
            assert digest == "sha256=" + expected.decode()
        assert len(record) == len(names)
    source = (package_dir() / "__init__.py").read_bytes()
    with zipfile.ZipFile(wheel.path) as archive:
        assert archive.read("envkit/__init__.py") == source


def test_the_wheel_is_built_once_per_digest(tmp_path):
    first = build_self_wheel(tmp_path)
    mtime = first.path.stat().st_mtime_ns
    second = build_self_wheel(tmp_path)
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    assert first.requirement("[sklearn]") == f"envkit[sklearn] @ {first.path.as_uri()}"


def test_the_runtime_list_is_pyprojects():
    """selfwheel.RUNTIME_REQUIREMENTS (used where the installed metadata is missing or older)
    says what pyproject.toml's dependencies say."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    from envkit.sandbox.selfwheel import RUNTIME_REQUIREMENTS

    def normal(line: str) -> tuple[str, str]:
        req = Requirement(line)
        return req.name.lower(), str(req.specifier)

    installed = {normal(r) for r in requires("envkit") or [] if "extra ==" not in r}
    assert {normal(r) for r in RUNTIME_REQUIREMENTS} == installed
