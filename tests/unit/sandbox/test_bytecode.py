"""The bytecode store: what envkit compiled in one environment seeds another, safely.

Real virtual environments (``python -m venv --without-pip``, a second or two each) and the
real child script, run by the environment's own Python.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from envkit.sandbox.bytecode import compile_sources, seed
from envkit.sandbox.manifest import difference, record_manifest

pytestmark = pytest.mark.timeout(120)

SOURCE = "VALUE = 'from the source'\n"


def _env(root: Path, source: str = SOURCE, base: str = sys.executable) -> tuple[Path, Path]:
    """(python, the module file) of a fresh virtual environment of ``base`` holding
    ``ekbc_mod.py``."""
    subprocess.run([base, "-m", "venv", "--without-pip", str(root)], check=True, timeout=60)
    python = root / "bin" / "python"
    site = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    module = Path(site) / "ekbc_mod.py"
    module.write_text(source, encoding="utf-8")
    return python, module


def _pyc(module: Path) -> Path:
    tag = sys.implementation.cache_tag
    return module.parent / "__pycache__" / f"{module.stem}.{tag}.pyc"


def _import_uses_pyc(python: Path) -> tuple[str, bool]:
    """(VALUE, whether the import read a .pyc) in a run that cannot write bytecode."""
    proc = subprocess.run(
        [str(python), "-I", "-B", "-v", "-c", "import ekbc_mod; print(ekbc_mod.VALUE)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = proc.stderr.splitlines()  # "# code object from <file>": the .py or the .pyc
    used = any("code object from" in line and "ekbc_mod.cpython" in line for line in lines)
    return proc.stdout.strip(), used


def test_bytecode_compiled_in_one_environment_seeds_another(tmp_path: Path) -> None:
    store = tmp_path / "store"
    python_a, module_a = _env(tmp_path / "a")
    first = compile_sources(python_a, store, [str(module_a)])
    assert first.ok and first.counts == {"compiled": 1}
    assert _pyc(module_a).is_file()
    assert _import_uses_pyc(python_a) == ("from the source", True)

    python_b, module_b = _env(tmp_path / "b")
    assert not _pyc(module_b).exists()
    seeded = seed(python_b, store)
    assert seeded.counts == {"seeded": 1}
    # The seeded file is a valid .pyc for b's own source (its mtime and size), used as is.
    assert _import_uses_pyc(python_b) == ("from the source", True)
    # Compiling again finds it present: nothing is compiled twice.
    assert compile_sources(python_b, store, [str(module_b)]).counts == {"present": 1}


def test_a_source_with_other_content_is_compiled_not_seeded(tmp_path: Path) -> None:
    store = tmp_path / "store"
    python_a, module_a = _env(tmp_path / "a")
    compile_sources(python_a, store, [str(module_a)])
    python_b, module_b = _env(tmp_path / "b", source="VALUE = 'other content'\n")
    assert seed(python_b, store).counts == {"absent": 1}
    assert not _pyc(module_b).exists()
    assert compile_sources(python_b, store, [str(module_b)]).counts == {"compiled": 1}
    assert _import_uses_pyc(python_b) == ("other content", True)


def test_a_modified_store_entry_is_never_used(tmp_path: Path) -> None:
    """Whoever rewrites a stored code object (here: to one that says 'planted') does not
    reach the next environment: the index vouches for the entry's size and mtime."""
    store = tmp_path / "store"
    python_a, module_a = _env(tmp_path / "a")
    compile_sources(python_a, store, [str(module_a)])
    entries = [p for p in store.rglob("*") if p.is_file() and p.name != "index.tsv"]
    assert len(entries) == 1
    planted = _pyc(module_a).read_bytes()[16:].replace(b"from the source", b"planted!!!!!!!!")
    entries[0].chmod(0o644)
    entries[0].write_bytes(planted)

    python_b, module_b = _env(tmp_path / "b")
    assert seed(python_b, store).counts == {"absent": 1}
    assert not _pyc(module_b).exists()
    assert _import_uses_pyc(python_b) == ("from the source", False)


def test_bytecode_written_after_a_run_is_in_the_manifest(tmp_path: Path) -> None:
    """envkit's own compile step rewrites the manifest (provision does); a .pyc that
    appears otherwise is a change the next cache hit rebuilds for."""
    python_a, module_a = _env(tmp_path / "a")
    root = tmp_path / "a"
    record_manifest(root)
    compile_sources(python_a, tmp_path / "store", [str(module_a)])
    assert difference(root) is not None and "added" in difference(root)
    record_manifest(root)
    assert difference(root) is None


def test_the_child_runs_under_the_oldest_supported_python(tmp_path: Path) -> None:
    """The child runs in the model's environment: any Python envkit supports (3.9+)."""
    py39 = sorted(Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))
    if not py39:
        pytest.skip("no Python 3.9 under ~/.pyenv on this machine")
    python, module = _env(tmp_path / "old", base=str(py39[-1]))
    result = compile_sources(python, tmp_path / "store", [str(module)])
    assert result.ok and result.counts == {"compiled": 1}
    assert (module.parent / "__pycache__" / "ekbc_mod.cpython-39.pyc").is_file()
