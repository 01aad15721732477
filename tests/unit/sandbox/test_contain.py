"""Which directories the model's run hides, and which of its paths it keeps (real files)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from envkit.sandbox.contain import _plan_hiding, _user_measure

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A directory others can enter (pytest's own is 0700, which would hide everything)."""
    path = Path(tempfile.mkdtemp(prefix="envkit-contain-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home directory closed to others (0700), as /root is, with the run's paths in it."""
    home = tmp_path / "home"
    for sub in ("cache/envs/e1", "pyenv/versions/3.11.7/bin", "projects/model", ".aws"):
        (home / sub).mkdir(parents=True)
    home.chmod(0o700)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_the_home_is_hidden_and_the_runs_own_paths_kept(home, tmp_path):
    needed = [home / "projects/model", home / "cache/envs/e1", home / "pyenv/versions/3.11.7"]
    work = tmp_path / "work"
    work.mkdir()
    hiding = _plan_hiding(needed, work, namespaced=True)
    assert hiding.measure.held and hiding.hide == [home]
    assert hiding.keep == sorted(needed)
    assert home / ".aws" not in hiding.keep
    if os.geteuid() == 0:  # as root, the 0700 home no longer keeps nobody out
        assert hiding.blocked == [home]
        assert _user_measure(needed, hiding).held


def test_a_path_reached_through_a_symlink_is_kept_in_both_forms(home, tmp_path):
    elsewhere = tmp_path / "data" / "envs"
    elsewhere.mkdir(parents=True)
    link = home / "cache" / "linked"
    link.symlink_to(elsewhere)
    work = tmp_path / "work"
    work.mkdir()
    hiding = _plan_hiding([link], work, namespaced=True)
    assert hiding.keep == [link]  # the link's target is not in the home: nothing to keep there


def test_nothing_is_hidden_when_the_home_is_the_run_s_own(home, tmp_path):
    work = home / "work"
    work.mkdir()
    assert not _plan_hiding([home / "projects/model"], work, namespaced=True).hide
    assert not _plan_hiding([home], tmp_path, namespaced=True).hide
    hiding = _plan_hiding([home / "projects/model"], tmp_path, namespaced=False)
    assert not hiding.hide and not hiding.measure.held


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user, the user measure is not root's")
def test_as_root_a_closed_directory_outside_the_home_is_hidden_too(home, tmp_path):
    closed = tmp_path / "closed"
    (closed / "model").mkdir(parents=True)
    closed.chmod(0o700)
    work = tmp_path / "work"
    work.mkdir()
    needed = [closed / "model"]
    hiding = _plan_hiding(needed, work, namespaced=True)
    assert closed in hiding.hide and hiding.keep == needed
    assert _user_measure(needed, hiding).held
    # Not hidden (no namespace): nobody cannot reach the model, and the report says why.
    bare = _plan_hiding(needed, work, namespaced=False)
    measure = _user_measure(needed, bare)
    assert not measure.held and str(closed) in measure.detail


def test_a_model_file_closed_to_others_is_found_and_the_copy_opens_it(tmp_path):
    """safetensors writes weights 0600: such a file never keeps the run as root (a model could
    ship one to get root); the run loads a copy opened to reading instead."""
    from envkit.sandbox.contain import closed_files_inside, readable_copy

    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    weights = model / "weights" / "model.safetensors"
    weights.write_bytes(b"\0")
    weights.chmod(0o600)
    (model / "MLmodel").write_text("flavors: {}\n")
    work = tmp_path / "work"
    work.mkdir()
    if os.geteuid() == 0:
        assert _user_measure([model], _plan_hiding([model], work, namespaced=True)).held
    assert closed_files_inside(model) == [weights]
    copy = readable_copy(model, tmp_path / "private" / "model")
    assert closed_files_inside(copy) == []
    assert (copy / "weights" / "model.safetensors").read_bytes() == b"\0"
    assert weights.stat().st_mode & 0o777 == 0o600  # the model itself is left as it is
