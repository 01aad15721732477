"""Modules are mapped to the distribution that installed the imported file; provenance records
how each was installed. Real distributions in a temporary site directory, real saves."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from capture_helpers import model_importing, requirement_names

import envkit.pyfunc
from envkit.deps.capture import RequirementWarning
from envkit.deps.distributions import STDLIB, DistributionIndex, _top_level_names

pytestmark = pytest.mark.capture  # these test the capture subprocess itself


def _model(import_line: str):
    return model_importing(import_line)


def _provenance(model_dir: Path) -> dict:
    data = json.loads((model_dir / "requirements.provenance.json").read_text())
    return {r["name"]: r for r in data["requirements"] if r.get("name")}


def _save_importing(tmp_path: Path, module: str, warns: str | None = None) -> dict:
    """Save a model (at tmp_path/m) whose load_context imports ``module``, and return the
    provenance record of the distribution named like it; ``warns`` matches the
    RequirementWarning the save must give (any other warning fails the test)."""
    model = _model(f"import {module}")
    if warns is None:
        envkit.pyfunc.save_model(tmp_path / "m", python_model=model)
    else:
        with pytest.warns(RequirementWarning, match=warns):
            envkit.pyfunc.save_model(tmp_path / "m", python_model=model)
    return _provenance(tmp_path / "m")[module]


def _install_and_save(
    fake_site, tmp_path: Path, name: str, version: str, *, direct_url=None, warns=None
) -> dict:
    """Install distribution ``name`` (with ``direct_url.json``, if given) providing the one
    module ``name``, then :func:`_save_importing` it."""
    fake_site.install(name, version, {f"{name}.py": "A = 1\n"}, direct_url=direct_url)
    return _save_importing(tmp_path, name, warns)


def test_namespace_package_is_disambiguated_by_the_imported_file(fake_site, tmp_path):
    fake_site.install("nsdemo-one", "1.0", {"nsdemo/one/__init__.py": "X = 1\n"})
    fake_site.install("nsdemo-two", "2.0", {"nsdemo/two/__init__.py": "X = 2\n"})
    envkit.pyfunc.save_model(tmp_path / "m", python_model=_model("import nsdemo.two"))
    names = requirement_names(tmp_path / "m")
    assert "nsdemo-two" in names
    assert "nsdemo-one" not in names
    assert _provenance(tmp_path / "m")["nsdemo-two"]["requirement"] == "nsdemo-two==2.0"


def test_declared_dependencies_are_kept_and_optional_imports_are_not(fake_site, tmp_path):
    fake_site.install("depleaf", "1.0", {"depleaf.py": "LEAF = 1\n"})
    fake_site.install("depextra", "1.0", {"depextra.py": "EXTRA = 1\n"})
    fake_site.install(
        "deproot",
        "3.1",
        {
            "deproot/__init__.py": (
                "import depleaf\n"
                "try:\n    import depextra  # optional: not declared\nexcept ImportError:\n"
                "    depextra = None\n"
            )
        },
        requires=("depleaf>=1",),
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=_model("import deproot"))
    assert requirement_names(tmp_path / "m") == {"envkit", "cloudpickle", "deproot", "depleaf"}


@pytest.fixture
def index_settings(monkeypatch):
    """``set(**variables)``: pip's and uv's index settings are exactly these (no config file)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in (
        "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "UV_DEFAULT_INDEX",
        "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_FIND_LINKS",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)

    def set_variables(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_variables


def test_a_local_build_is_pinned_with_its_label_and_a_warning_when_nothing_serves_it(
    fake_site, tmp_path, index_settings
):
    """torch 2.3.0+cu121 from nowhere envkit can name: the pin keeps +cu121 (that build is what
    the model ran with), and the warning says which index to add."""
    index_settings()
    record = _install_and_save(
        fake_site,
        tmp_path,
        "labelled",
        "2.3.0+cu121",
        warns=r"labelled 2\.3\.0\+cu121 is a local build.*download\.pytorch\.org/whl/cu121",
    )
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert "labelled==2.3.0+cu121" in lines
    assert not any(line.startswith("--") for line in lines)
    assert record["local_label"] == "cu121"
    assert record["installed_version"] == "2.3.0+cu121"


def test_a_local_build_records_the_remote_index_it_needs_in_requirements(
    fake_site, tmp_path, index_settings
):
    """With PyTorch's index configured (pip's extra index), requirements.txt carries it beside
    the labelled pin, so that plain pip install -r finds the build; local file:// indexes are
    this machine's, never written."""
    index_settings(
        PIP_EXTRA_INDEX_URL="https://user:pw@download.pytorch.org/whl/cpu file:///opt/mirror"
    )
    _install_and_save(fake_site, tmp_path, "labelled", "2.3.0+cpu")
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert "labelled==2.3.0+cpu" in lines
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert not any("file://" in line or "pw@" in line for line in lines)


def test_a_local_build_from_find_links_is_recorded_in_the_provenance(
    fake_site, tmp_path, index_settings
):
    """pip's find-links (a wheel directory, as on this machine) served the build: no warning,
    no path of this machine in requirements.txt, the directory in the provenance."""
    wheels = tmp_path / "wheels"
    index_settings(PIP_FIND_LINKS=str(wheels))
    _install_and_save(fake_site, tmp_path, "labelled", "2.3.0+cpu")
    lines = (tmp_path / "m" / "requirements.txt").read_text().splitlines()
    assert "labelled==2.3.0+cpu" in lines
    assert not any(line.startswith("--") for line in lines)
    provenance = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())
    assert provenance["find_links"] == [str(wheels)]


def test_a_vcs_install_is_reported_with_the_line_to_use(fake_site, tmp_path):
    record = _install_and_save(
        fake_site,
        tmp_path,
        "fromgit",
        "0.4.0",
        direct_url={
            "url": "https://user:hunter2@example.com/org/fromgit.git",
            "vcs_info": {"vcs": "git", "commit_id": "0123abc"},
        },
        warns=r"fromgit @ git\+https://example.com/org",
    )
    assert record["install"] == "vcs"
    assert record["url"] == "git+https://example.com/org/fromgit.git@0123abc"
    assert "index_url" not in record
    assert not any(
        "hunter2" in p.read_text()
        for p in (tmp_path / "m").rglob("*")
        if p.is_file() and p.suffix != ".pkl"
    )


def test_an_editable_install_is_found_through_its_project_directory(
    fake_site, tmp_path, monkeypatch
):
    project = tmp_path / "project"
    fake_site.install(
        "myedit",
        "0.1.0",
        {"src/myedit/__init__.py": "A = 1\n"},
        direct_url={"url": project.as_uri(), "dir_info": {"editable": True}},
        source_dir=project,
    )
    monkeypatch.syspath_prepend(str(project / "src"))
    record = _save_importing(tmp_path, "myedit", warns="myedit is an editable install")
    assert record["install"] == "editable"
    assert record["requirement"] == "myedit==0.1.0"


def test_a_local_directory_install_is_reported(fake_site, tmp_path):
    record = _install_and_save(
        fake_site,
        tmp_path,
        "fromdir",
        "1.2",
        direct_url={"url": (tmp_path / "src").as_uri(), "dir_info": {}},
        warns="fromdir was installed from a local path",
    )
    assert record["install"] == "local"


def test_the_index_url_is_recorded_without_credentials(fake_site, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://build:s3cr3t-t0ken@pkgs.example.com/simple?x=1")
    monkeypatch.delenv("UV_INDEX_URL", raising=False)
    monkeypatch.delenv("UV_DEFAULT_INDEX", raising=False)
    record = _install_and_save(fake_site, tmp_path, "plainpkg", "1.0")
    data = json.loads((tmp_path / "m" / "requirements.provenance.json").read_text())
    assert data["index_url"] == "https://pkgs.example.com/simple"
    assert record["index_url"] == "https://pkgs.example.com/simple"
    for path in (tmp_path / "m").rglob("*"):
        if path.is_file():
            assert b"s3cr3t" not in path.read_bytes()


def test_top_level_names_without_top_level_txt_come_from_the_record(fake_site):
    # The Python 3.9 path (no packages_distributions()): RECORD file names give import names.
    fake_site.install("recordonly", "1.0", {"rec_pkg/__init__.py": "", "rec_mod.py": ""})
    from importlib import metadata

    dist = metadata.distribution("recordonly")
    assert _top_level_names(dist) == {"rec_pkg", "rec_mod"}
    fake_site.install("declared", "1.0", {"decl_a.py": ""}, top_level=("decl_a",))
    assert _top_level_names(metadata.distribution("declared")) == {"decl_a"}


def test_owner_of_stdlib_installed_and_local_modules(tmp_path):
    import json as json_module

    import yaml

    index = DistributionIndex()
    assert index.owner("json", json_module.__file__).kind == STDLIB
    owner = index.owner("yaml", yaml.__file__)
    assert (owner.kind, owner.dist) == ("dist", "pyyaml")
    local = tmp_path / "yaml.py"  # a local file shadowing an installed name is not PyYAML
    local.write_text("")
    assert index.owner("yaml", str(local)).kind == "local"
    assert sys.modules["yaml"] is yaml
    # not a file of the model's: a relative __file__ (torch.ops: "_ops.py"), and a module a
    # library generates in a temporary directory (torch.distributed's RemoteModule template)
    assert index.owner("yaml.ops", "_ops.py").kind == "none"
    generated = tmp_path / "_remote_module_non_scriptable.py"
    assert index.owner("_remote_module_non_scriptable", str(generated)).kind == "none"


def test_a_flavor_requirement_with_a_local_label_keeps_it(fake_site, tmp_path, index_settings):
    from envkit.deps.capture import UserRequirements, decide_requirements

    index_settings(PIP_FIND_LINKS=str(tmp_path))
    fake_site.install("flavorlib", "1.4.0+cpu", {"flavorlib.py": "A = 1\n"})
    envkit.pyfunc.save_model(tmp_path / "m", python_model=model_importing(), pip_requirements=[])
    decision = decide_requirements(
        tmp_path / "m",
        default_requirements=["flavorlib==1.4.0+cpu"],
        user_requirements=UserRequirements(),
        input_example_info=None,
        strict=True,
    )
    assert "flavorlib==1.4.0+cpu" in decision.requirements
    assert decision.messages == []


def test_a_user_line_for_a_vcs_install_settles_the_warning(fake_site, tmp_path):
    import warnings

    fake_site.install(
        "fromgit2",
        "0.4.0",
        {"fromgit2.py": "A = 1\n"},
        direct_url={"url": "https://example.com/fromgit2.git", "vcs_info": {"vcs": "git"}},
    )
    line = "fromgit2 @ git+https://example.com/fromgit2.git"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        envkit.pyfunc.save_model(
            tmp_path / "m", python_model=_model("import fromgit2"), extra_pip_requirements=[line]
        )
    assert (tmp_path / "m" / "requirements.txt").read_text().splitlines()[-1] == line


# A stand-in for a compiled module (C, Cython, mypyc: mypy's own modules are): it imports its
# dependency while it initialises, from inside the import machinery, with no Python frame of its
# own. Only the C callables functools.partial and operator.methodcaller run between the import
# machinery and the import, exactly as for a real extension module.
COMPILED_MODULE_PACKAGE = """
import builtins, functools, importlib.abc, importlib.machinery, operator, os, sys, types

class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__file__ = os.path.join(os.path.dirname(__file__), "_compiled.py")
        module.init_extension = functools.partial(builtins.__import__, "{dependency}")
        return module

    exec_module = operator.methodcaller("init_extension")

class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == __name__ + "._compiled":
            return importlib.machinery.ModuleSpec(name, _Loader())
        return None

sys.meta_path.insert(0, _Finder())
"""


@pytest.mark.parametrize(
    ("distribution", "kept"),
    [("pytest-envkit-probe", False), ("envkit-probe-library", True)],
    ids=["through-an-excluded-tool", "through-a-library"],
)
def test_what_a_compiled_module_imports_belongs_to_its_distribution(
    fake_site, tmp_path, distribution, kept
):
    """A model importing mypy got mypy's librt (mypy is excluded as dev tooling, librt was
    attributed to the model because mypy's compiled modules import it with no Python frame)."""
    package = distribution.replace("-", "_")
    dependency = "extension_helper"
    fake_site.install(dependency, "1.0", {f"{dependency}.py": "D = 1\n"})
    fake_site.install(
        distribution,
        "2.0",
        {
            f"{package}/__init__.py": COMPILED_MODULE_PACKAGE.format(dependency=dependency),
            f"{package}/_compiled.py": "",
        },
        requires=(dependency,),
    )
    envkit.pyfunc.save_model(tmp_path / "m", python_model=_model(f"import {package}._compiled"))
    names = requirement_names(tmp_path / "m")
    if kept:  # a library the model imports needs what it declares and imports
        assert names == {"envkit", "cloudpickle", distribution, "extension-helper"}
    else:  # dev tooling is excluded, and what only it pulls in too
        assert names == {"envkit", "cloudpickle"}
