"""Fixtures for the dependency tests: real (tiny) distributions installed into a temporary
site directory on ``sys.path``, which the capture subprocess inherits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


class FakeSite:
    """Writes installed-distribution metadata (``*.dist-info``) and module files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def install(
        self,
        name: str,
        version: str,
        files: dict[str, str],
        *,
        requires: tuple[str, ...] = (),
        direct_url: dict | None = None,
        top_level: tuple[str, ...] | None = None,
        source_dir: Path | None = None,
    ) -> Path:
        """Install ``name`` ``version``; ``files`` maps paths (relative to the site, or to
        ``source_dir`` for an editable install) to their source code."""
        base = source_dir or self.root
        for relative, text in files.items():
            path = base / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        dist_info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        metadata += [f"Requires-Dist: {r}" for r in requires]
        (dist_info / "METADATA").write_text("\n".join(metadata) + "\n")
        (dist_info / "INSTALLER").write_text("pip\n")
        record = [] if source_dir else [f"{relative},," for relative in files]
        if top_level is not None:
            (dist_info / "top_level.txt").write_text("\n".join(top_level) + "\n")
            record.append(f"{dist_info.name}/top_level.txt,,")
        if direct_url is not None:
            (dist_info / "direct_url.json").write_text(json.dumps(direct_url))
            record.append(f"{dist_info.name}/direct_url.json,,")
        record += [f"{dist_info.name}/{n},," for n in ("METADATA", "INSTALLER", "RECORD")]
        (dist_info / "RECORD").write_text("\n".join(record) + "\n")
        return dist_info


@pytest.fixture
def fake_site(tmp_path, monkeypatch) -> FakeSite:
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return FakeSite(site)
