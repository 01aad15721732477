"""Backend registry: built-ins, reasons, auto choice, and a third-party entry point."""

from __future__ import annotations

import sys
import textwrap

import pytest

from envkit.errors import BackendUnavailableError, UsageError
from envkit.sandbox.backends import (
    backend_reasons,
    choose_backend,
    load_backend,
    registered_backends,
)
from envkit.sandbox.backends.base import Backend, child_environment, install_plan
from envkit.sandbox.backends.conda import find_conda
from envkit.sandbox.backends.uv import uv_environment
from envkit.sandbox.selfwheel import SelfWheel
from envkit.sandbox.spec import EnvSpec


def test_every_backend_answers_why_it_cannot_run():
    reasons = backend_reasons()
    assert list(reasons)[:5] == ["uv", "virtualenv", "conda", "docker", "local"]
    assert reasons["uv"] is None and reasons["local"] is None and reasons["virtualenv"] is None
    if find_conda() is None:
        assert "no conda, mamba or micromamba executable" in reasons["conda"]


def test_an_unavailable_backend_is_an_error_with_its_reason(monkeypatch):
    if find_conda() is not None:
        pytest.skip("conda is installed here")
    with pytest.raises(BackendUnavailableError) as info:
        choose_backend("conda")
    assert info.value.exit_code == 3 and "conda" in info.value.reasons
    assert str(info.value).startswith("the conda environment manager cannot run here")


def test_auto_picks_the_first_that_can_run_and_says_so(monkeypatch):
    monkeypatch.setattr("envkit.sandbox.backends.uv.find_uv", lambda: None)  # uv "missing"
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    backend, note = choose_backend("auto")
    assert backend.name == "virtualenv"
    assert note is not None and note.startswith("--env-manager auto chose virtualenv (skipped uv:")


def test_unknown_backend_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown environment manager 'nope'; choose one of"):
        load_backend("nope")


def test_a_third_party_backend_plugs_in_through_the_entry_point_group(tmp_path, monkeypatch):
    """A real distribution on sys.path (dist-info with entry_points.txt), found by metadata."""
    (tmp_path / "fakebackend.py").write_text(
        textwrap.dedent(
            """
            from envkit.sandbox.backends.base import Backend

            class FakeBackend(Backend):
                name = "fake"

                def unavailable_reason(self):
                    return "fake needs a fake engine"
            """
        )
    )
    dist_info = tmp_path / "fakebackend-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakebackend\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[envkit.backends]\nfake = fakebackend:FakeBackend\nuv = fakebackend:FakeBackend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registered_backends()["fake"] == "fakebackend:FakeBackend"
    # A plugin cannot take over a built-in backend's name.
    assert registered_backends()["uv"] == "envkit.sandbox.backends.uv:UvBackend"
    backend = load_backend("fake")
    assert isinstance(backend, Backend)
    with pytest.raises(BackendUnavailableError, match="fake needs a fake engine"):
        choose_backend("fake")
    sys.modules.pop("fakebackend", None)


def test_the_sandbox_never_sees_the_hosts_python_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("VIRTUAL_ENV", "/some/venv")
    env = child_environment()
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert env["PYTHONNOUSERSITE"] == "1"


def test_uv_gets_pips_index_and_certificate_settings(monkeypatch, tmp_path):
    cert = tmp_path / "ca.pem"
    cert.write_text("")
    for name in (
        "UV_INDEX_URL",
        "UV_EXTRA_INDEX_URL",
        "UV_FIND_LINKS",
        "SSL_CERT_FILE",
        "UV_NATIVE_TLS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.invalid/simple")
    monkeypatch.setenv("PIP_CERT", str(cert))
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels  file:///srv/more")
    env = uv_environment()
    assert env["UV_INDEX_URL"] == "https://mirror.invalid/simple"
    assert env["UV_FIND_LINKS"] == "/opt/wheels,file:///srv/more"  # pip: spaces, uv: commas
    assert env["SSL_CERT_FILE"] == str(cert)
    assert env["UV_PYTHON_DOWNLOADS"] == "never"


def test_envkit_is_installed_from_the_local_wheel_never_from_an_index(tmp_path):
    wheel = SelfWheel(tmp_path / "envkit-0.1.0-py3-none-any.whl", "abc")
    spec = EnvSpec("3.11.7", ("envkit[sklearn]==0.1.0", "numpy"), constraints=("envkit<1",))
    plan = install_plan(spec, wheel)
    assert plan.requirements == [f"envkit[sklearn] @ {wheel.path.as_uri()}", "numpy"]
    assert plan.constraints == []


def test_index_credentials_never_reach_the_record_or_the_kept_files(tmp_path):
    spec = EnvSpec(
        "3.11.7", ("numpy",), options=("--extra-index-url https://user:s3cret@pypi.corp/simple",)
    )
    assert "s3cret" not in str(spec.to_dict())
    plan = install_plan(spec, None)
    with plan.staged(tmp_path) as files:
        assert "s3cret" in files.requirements.read_text()  # the installer needs them
    kept = (tmp_path / ".envkit" / "requirements.txt").read_text()
    assert "s3cret" not in kept and "https://pypi.corp/simple" in kept


def test_without_the_docker_sdk_the_docker_backend_says_how_to_get_it(monkeypatch):
    for name in ("docker", "docker.client", "docker.errors"):
        monkeypatch.setitem(sys.modules, name, None)  # `import docker` fails: not installed
    reason = load_backend("docker").unavailable_reason()
    assert reason == "the docker Python SDK is not installed (pip install 'envkit[docker]')"
    with pytest.raises(BackendUnavailableError) as info:
        choose_backend("docker")
    assert info.value.exit_code == 3 and info.value.reasons == {"docker": reason}


def test_an_unreachable_docker_engine_is_named_with_the_reason(monkeypatch, tmp_path):
    """A real fault: the socket DOCKER_HOST names does not exist."""
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    reason = load_backend("docker").unavailable_reason()
    assert reason == (
        f"the Docker engine is not reachable at unix://{tmp_path}/no-such.sock (No such file "
        "or directory); start it or set DOCKER_HOST"
    )


def test_the_docker_backend_is_found_when_the_installed_entry_point_names_its_old_module(
    tmp_path, monkeypatch
):
    """An install made before the backend moved to envkit.docker keeps the old entry point
    (an editable install keeps the entry points it was installed with): the built-in wins."""
    dist_info = tmp_path / "oldenvkit-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: oldenvkit\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        "[envkit.backends]\ndocker = envkit.sandbox.backends.docker:DockerBackend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registered_backends()["docker"] == "envkit.docker.backend:DockerBackend"
    backend = load_backend("docker")
    assert type(backend).__module__ == "envkit.docker.backend" and backend.name == "docker"


def test_the_sandbox_and_the_layers_below_it_never_import_envkit_docker():
    """Layers import downward only: envkit.docker imports the sandbox, never the reverse (not
    even inside a function). The docker backend is named by a string in the registry."""
    import ast
    from pathlib import Path

    import envkit

    root = Path(envkit.__file__).parent
    offenders = []
    for layer in ("models", "deps", "pyfunc", "sklearn", "sandbox"):
        for path in sorted((root / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                if any(n == "envkit.docker" or n.startswith("envkit.docker.") for n in names):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []


def test_a_locked_spec_installs_its_pins_with_their_hashes_then_envkit(tmp_path):
    wheel = SelfWheel(tmp_path / "envkit-0.1.0-py3-none-any.whl", "abc")
    hashes = (("numpy==2.0.0", ("sha256:aa", "sha256:bb")), ("six==1.16.0", ("sha256:cc",)))
    spec = EnvSpec("3.11.7", ("envkit[serve]==0.1.0", "numpy==2.0.0", "six==1.16.0"), hashes=hashes)
    plan = install_plan(spec, wheel)
    assert plan.require_hashes
    assert plan.requirements == [
        "numpy==2.0.0 --hash=sha256:aa --hash=sha256:bb",
        "six==1.16.0 --hash=sha256:cc",
    ]
    assert plan.unhashed == [f"envkit[serve] @ {wheel.path.as_uri()}"]
    assert plan.pins == ["numpy==2.0.0", "six==1.16.0"]
    (tmp_path / "env").mkdir()
    with plan.staged(tmp_path / "env") as files:
        assert files.second_step()[:2] == ["-r", str(files.unhashed)]
        assert files.pins is not None and files.pins.read_text() == "numpy==2.0.0\nsix==1.16.0\n"
    # The hashes are part of the key: a lock whose hashes changed is another environment.
    assert EnvSpec("3.11.7", spec.requirements).key != spec.key
    assert EnvSpec.from_dict(spec.to_dict()) == spec

    # An --override that replaces a locked pin: that pin has no hash, so none are checked.
    overridden = EnvSpec("3.11.7", ("envkit==0.1.0", "numpy==2.1.0", "six==1.16.0"), hashes=hashes)
    assert not install_plan(overridden, wheel).require_hashes


def test_a_registered_class_that_is_not_a_backend_is_unavailable_with_what_it_lacks(monkeypatch):
    """The registry checks the SandboxBackend protocol: a third party's class that lacks it
    is refused with the members it lacks, never half-used."""
    from envkit.sandbox import backends

    monkeypatch.setattr(backends, "registered_backends", lambda: {"odd": "collections:OrderedDict"})
    backend = backends.load_backend("odd")
    reason = backend.available().reason
    assert reason is not None and "collections:OrderedDict is not an envkit backend" in reason
    assert "choose_python" in reason and "create" in reason


def test_every_builtin_backend_implements_the_protocol():
    from envkit.sandbox.backends import BUILTIN_BACKENDS, load_backend
    from envkit.sandbox.backends.base import SandboxBackend

    for name in BUILTIN_BACKENDS:
        backend = load_backend(name)
        assert isinstance(backend, SandboxBackend), name
        assert backend.describe()["name"] == name
