"""Seeding compiled bytecode between environments that share installed files."""

from __future__ import annotations

import importlib.util
import os
import py_compile
import shutil
import sys
from pathlib import Path

from envkit.sandbox.bytecode import seed_bytecode, site_packages

PY = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def _env(root: Path) -> Path:
    (root / "lib" / PY / "site-packages" / "pkg").mkdir(parents=True)
    return root / "lib" / PY / "site-packages"


def test_shared_files_get_the_donors_bytecode_and_copies_do_not(tmp_path):
    donor_sp = _env(tmp_path / "donor")
    target_sp = _env(tmp_path / "target")
    (donor_sp / "pkg" / "shared.py").write_text("X = 1\n")
    (donor_sp / "pkg" / "copied.py").write_text("Y = 2\n")
    os.link(donor_sp / "pkg" / "shared.py", target_sp / "pkg" / "shared.py")  # as uv installs
    shutil.copy2(donor_sp / "pkg" / "copied.py", target_sp / "pkg" / "copied.py")
    for name in ("shared.py", "copied.py"):
        py_compile.compile(str(donor_sp / "pkg" / name), doraise=True)

    assert site_packages(tmp_path / "target") == target_sp
    assert seed_bytecode(tmp_path / "target", [tmp_path / "donor", tmp_path / "missing"]) == 1
    seeded = Path(importlib.util.cache_from_source(str(target_sp / "pkg" / "shared.py")))
    assert seeded.is_file()
    donor_pyc = importlib.util.cache_from_source(str(donor_sp / "pkg" / "shared.py"))
    assert os.path.samefile(seeded, donor_pyc)
    assert not Path(importlib.util.cache_from_source(str(target_sp / "pkg" / "copied.py"))).exists()
    assert seed_bytecode(tmp_path / "target", [tmp_path / "donor"]) == 0  # already there
