"""Docker images for a model: a build context (Dockerfile + requirements + model), built by
the Docker engine through the ``docker`` SDK (the ``envkit[docker]`` extra, imported when used).

The Dockerfile (template ``docker/templates/Dockerfile.in``) has two stages: ``env`` (a Python
base image, a virtualenv, a non-root user, the model's requirements plus ``envkit[serve]``)
and ``model`` (``env`` + the model + the scoring server as entrypoint). ``envkit validate
--env-manager docker`` builds ``env`` and mounts the model; ``envkit build-docker`` builds
``model``. Both write the ``env`` stage identically, so they share its layers: validating a
model warms the cache of the image that will serve it.

Only classic-builder syntax is used (no ``RUN --mount``, heredocs or secrets). The build runs
with the host's network (the install step needs PyPI; nothing else runs with the network). A CA
bundle (``--ca-bundle``; by default the one ``ENVKIT_DOCKER_CA_BUNDLE``, ``PIP_CERT``,
``SSL_CERT_FILE`` or ``REQUESTS_CA_BUNDLE`` names) is copied into the build so that pip works
behind a TLS-intercepting proxy; it is used by the install step only, not trusted at run time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import string
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit._subprocess import Outcome
from envkit._version import __version__
from envkit.errors import (
    BackendUnavailableError,
    EnvironmentBuildError,
    ModelFormatError,
    UsageError,
)

if TYPE_CHECKING:
    from docker.client import DockerClient

    from envkit.sandbox.backends.base import InstallPlan
    from envkit.sandbox.spec import EnvSpec

logger = logging.getLogger(__name__)

__all__ = [
    "BuildContext",
    "ImageBuild",
    "build_image",
    "default_base_image",
    "engine_unavailable_reason",
    "generate_dockerfile",
]

ENV_BASE_IMAGE = "ENVKIT_DOCKER_BASE_IMAGE"
ENV_CA_BUNDLE = "ENVKIT_DOCKER_CA_BUNDLE"
CA_BUNDLE_SOURCES = (ENV_CA_BUNDLE, "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")

CONTAINER_UID = 10001
CONTAINER_BUILD_DIR = "/opt/envkit/build"
CONTAINER_VENV = "/opt/envkit/venv"
CONTAINER_PYTHON = f"{CONTAINER_VENV}/bin/python"
CONTAINER_MODEL_DIR = "/opt/ml/model"
CONTAINER_PORT = 8080
BUILD_DIR = "envkit-build"
MODEL_DIR = "model"
TEMPLATE_NAME = "Dockerfile.in"

LABEL_SPEC_KEY = "org.envkit.spec-key"
LABEL_BASE_IMAGE = "org.envkit.base-image"
LABEL_VERSION = "org.envkit.version"
# On containers: the envkit process that runs it (pid and boot), so that containers a killed
# envkit left behind are recognised and removed (reap_orphaned_containers).
LABEL_OWNER = "org.envkit.owner"

DEFAULT_BUILD_TIMEOUT = 1800.0


# --- the engine ----------------------------------------------------------------------------------

SDK_MISSING = "the docker Python SDK is not installed (pip install 'envkit[docker]')"
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def _unreachable(exc: BaseException) -> str:
    """Why the engine did not answer, in a line: the innermost OS error where there is one."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE
    why = str(exc).replace("Error while fetching server API version: ", "")
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            why = cause.strerror
        cause = cause.__cause__ or cause.__context__
    return f"the Docker engine is not reachable at {host} ({why}); start it or set DOCKER_HOST"


@contextlib.contextmanager
def engine(timeout: float = 60) -> Iterator[DockerClient]:
    """A client of the engine ``DOCKER_HOST`` names (the local socket by default), closed on
    exit; ``timeout`` bounds each API call. Raises :class:`BackendUnavailableError` (exit 3)
    when the SDK is not installed or no engine answers, and :class:`EnvironmentBuildError`
    (exit 3) for an engine error the block does not handle itself."""
    try:
        from docker.client import DockerClient
        from docker.errors import DockerException
    except ImportError:
        raise BackendUnavailableError(
            f"cannot use Docker: {SDK_MISSING}", reasons={"docker": SDK_MISSING}
        )
    reason = ""
    # docker-py leaves the socket of a failed connect open: dropping the tracebacks that hold
    # it closes it here, where its ResourceWarning is ignored.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = DockerClient.from_env(version="auto", timeout=timeout)
        except DockerException as exc:
            reason = _unreachable(exc)
            cause: BaseException | None = exc
            while cause is not None:
                cause.__traceback__ = None
                cause = cause.__cause__ or cause.__context__
    if reason:
        raise BackendUnavailableError(f"cannot use Docker: {reason}", reasons={"docker": reason})
    import requests.exceptions

    try:
        yield client
    except DockerException as exc:  # what the caller did not handle itself
        why = getattr(exc, "explanation", None) or exc
        raise EnvironmentBuildError(f"the Docker engine refused: {why}", detail=str(exc))
    except requests.exceptions.RequestException as exc:
        raise EnvironmentBuildError(f"lost the Docker engine: {exc}", detail=str(exc))
    finally:
        client.close()


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return "unknown-boot"


def owner_labels() -> dict[str, str]:
    """The label that ties a container to this envkit process (see reap_orphaned_containers)."""
    import socket

    return {LABEL_OWNER: f"{socket.gethostname()}/{_boot_id()}/{os.getpid()}"}


def reap_orphaned_containers(client: Any) -> list[str]:
    """Remove the containers whose envkit process (on this machine, since its last boot) is
    gone: a validation or a server whose envkit was killed (SIGKILL) before removing it.
    Returns their names."""
    import socket

    from docker.errors import DockerException

    from envkit._fs import process_alive

    prefix = f"{socket.gethostname()}/{_boot_id()}/"
    removed: list[str] = []
    try:
        containers = client.containers.list(all=True, filters={"label": LABEL_OWNER})
    except DockerException:
        return removed
    for container in containers:
        owner = str((container.labels or {}).get(LABEL_OWNER, ""))
        pid = owner[len(prefix) :] if owner.startswith(prefix) else ""
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        with contextlib.suppress(DockerException):
            container.remove(force=True)
            removed.append(str(container.name))
            logger.info("removed container %s, left by an envkit that was killed", container.name)
    return removed


def engine_unavailable_reason() -> str | None:
    """Why no Docker engine can be used from here (``None`` when one answers)."""
    try:
        with engine(timeout=30):
            return None
    except BackendUnavailableError as exc:
        return exc.reasons["docker"]


def engine_version() -> str:
    """The engine's version (``?`` when it does not say)."""
    try:
        with engine(timeout=30) as client:
            from docker.errors import DockerException

            try:
                return str(client.version().get("Version") or "?")
            except DockerException:
                return "?"
    except BackendUnavailableError:
        return "?"


def require_engine() -> None:
    """Raise :class:`BackendUnavailableError` (exit 3) when no engine answers."""
    with engine(timeout=30):
        pass


def image_inspect(ref: str) -> dict[str, Any] | None:
    """The engine's description of image ``ref``, ``None`` when there is no such image."""
    with engine() as client:
        from docker.errors import APIError

        try:
            info = client.api.inspect_image(ref)
        except APIError:  # NotFound, or a reference the engine refuses
            return None
    return info if isinstance(info, dict) else None


def find_images(labels: Mapping[str, str]) -> list[str]:
    """IDs of images that carry all of ``labels``."""
    with engine() as client:
        found = client.api.images(
            quiet=True, filters={"label": [f"{k}={v}" for k, v in labels.items()]}
        )
    return [str(image_id) for image_id in found]


def tag_image(image: str, tag: str) -> None:
    """Give ``image`` (an ID or a reference) the name ``tag`` (``repository:tag``)."""
    repository, _, name = tag.rpartition(":")
    if not repository or "/" in name:
        repository, name = tag, "latest"
    with engine() as client:
        if not client.api.tag(image, repository, name, force=True):
            raise EnvironmentBuildError(f"the engine did not tag image {image[:19]} as {tag}")


def remove_image(ref: str) -> bool:
    """Remove (untag) image ``ref``; ``False`` when there was no such image or it is in use."""
    with engine() as client:
        from docker.errors import APIError

        try:
            client.api.remove_image(ref)
        except APIError:
            return False
    return True


def run_container(
    image: str,
    command: Sequence[str],
    *,
    timeout: float | None = None,
    name: str | None = None,
    environment: Mapping[str, str] | None = None,
    **options: Any,
) -> Outcome:
    """Run ``command`` in a new container of ``image`` to its end, as :func:`envkit._subprocess.run`
    runs a process: output captured, killed at ``timeout``, always removed. ``options`` are the
    SDK's ``containers.create`` options (``network_mode``, ``volumes``, ``user``...)."""
    command = [str(part) for part in command]
    logger.debug("running in a container of %s: %s", image, " ".join(command))
    with engine() as client:
        import requests.exceptions
        from docker.errors import APIError, DockerException

        reap_orphaned_containers(client)
        start = time.perf_counter()
        container = client.containers.create(
            image,
            command,
            name=name,
            environment=dict(environment or {}),
            labels=owner_labels(),
            **options,
        )
        try:
            container.start()
            timed_out = False
            try:
                code: int | None = int(container.wait(timeout=timeout)["StatusCode"])
            except requests.exceptions.ConnectionError:  # the wait timed out (or the engine left)
                if timeout is None or time.perf_counter() - start < timeout:
                    raise
                timed_out, code = True, None
                with contextlib.suppress(APIError):  # it may have ended meanwhile
                    container.kill()
            duration = time.perf_counter() - start
            stdout = container.logs(stdout=True, stderr=False)
            stderr = container.logs(stdout=False, stderr=True)
            oom_killed = False
            with contextlib.suppress(DockerException):
                container.reload()
                oom_killed = bool((container.attrs.get("State") or {}).get("OOMKilled"))
        finally:
            try:
                container.remove(force=True)
            except DockerException as exc:
                logger.warning("could not remove container %s: %s", container.name, exc)
    return Outcome(
        argv=command,
        returncode=code,
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        duration=duration,
        timed_out=timed_out,
        extra={"image": image, "container": container.name, "oom_killed": oom_killed},
    )


# --- configuration ------------------------------------------------------------------------------


def python_minor(version: str) -> str:
    parts = str(version).strip().split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise UsageError(f"cannot tell the Python minor version of {version!r}")
    return f"{parts[0]}.{parts[1]}"


def default_base_image(python: str, base_image: str | None = None) -> str:
    """``base_image``, else ``$ENVKIT_DOCKER_BASE_IMAGE``, else ``python:<X.Y>-slim``."""
    chosen = base_image or os.environ.get(ENV_BASE_IMAGE)
    if chosen:
        return check_image_reference(chosen)
    return f"python:{python_minor(python)}-slim"


def check_image_reference(reference: str) -> str:
    """``reference`` when it is a plausible image reference; else a :class:`UsageError`."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*", reference):
        raise UsageError(f"invalid base image reference {reference!r}")
    return reference


def resolve_ca_bundle(ca_bundle: str | os.PathLike[str] | None = "auto") -> Path | None:
    """The CA bundle to build with: a path, ``none``, or ``auto``.

    ``auto`` takes ``$ENVKIT_DOCKER_CA_BUNDLE`` as if it were given (``none`` disables, a
    missing file is an error), else the first of ``PIP_CERT``, ``SSL_CERT_FILE``,
    ``REQUESTS_CA_BUNDLE`` that names a file.
    """
    if ca_bundle is None or str(ca_bundle) == "auto":
        configured = os.environ.get(ENV_CA_BUNDLE, "").strip()
        if configured and configured != "auto":
            return _ca_bundle_file(configured, ENV_CA_BUNDLE + "=")
        for name in CA_BUNDLE_SOURCES[1:]:
            value = os.environ.get(name)
            if value and os.path.isfile(value):
                return Path(value).absolute()
        return None
    return _ca_bundle_file(str(ca_bundle), "--ca-bundle ")


def _ca_bundle_file(value: str, origin: str) -> Path | None:
    """``value`` as a CA bundle (``none`` for none); ``origin`` names it in the error."""
    if value.lower() == "none":
        return None
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        raise UsageError(f"{origin}{value}: no such file (give a CA bundle file, or none)")
    return path


# --- the build context --------------------------------------------------------------------------


@dataclass
class BuildContext:
    """A directory ``docker build`` can build: Dockerfile, envkit-build/, model/."""

    directory: Path
    base_image: str
    python: str
    requirements: list[str]
    env_vars: list[str] = field(default_factory=list)
    ca_bundle: Path | None = None
    has_model: bool = True

    @property
    def dockerfile(self) -> Path:
        return self.directory / "Dockerfile"


def template_path() -> Path:
    """The Dockerfile template: shipped in the wheel, or ``docker/templates`` of a checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (
        package / "_docker_templates" / TEMPLATE_NAME,
        package.parent / "docker" / "templates" / TEMPLATE_NAME,
    ):
        if candidate.is_file():
            return candidate
    raise EnvironmentBuildError(
        f"the Dockerfile template {TEMPLATE_NAME} is missing from this envkit installation"
    )


def _rewrite_requirements(
    lines: Sequence[str], wheels_dir: Path, container_dir: str
) -> tuple[list[str], list[str]]:
    """(the model's requirements, envkit's) for inside the image: local ``file://`` wheels are
    copied into ``wheels_dir`` and pointed at ``container_dir``; envkit gets its ``serve``
    extra and goes into a list of its own (its own layer)."""
    from urllib.parse import unquote, urlparse
    from urllib.request import url2pathname

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    options: list[str] = []
    model: list[str] = []
    envkit: list[str] = []
    for line in lines:
        if line.startswith("-"):
            options.append(line)
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            model.append(line)
            continue
        is_envkit = canonicalize_name(req.name) == "envkit"
        extras = set(req.extras) | ({"serve"} if is_envkit else set())
        url = req.url
        if url and url.startswith("file:"):
            source = Path(url2pathname(unquote(urlparse(url).path)))
            if not source.is_file():
                raise EnvironmentBuildError(f"the requirement {line!r} names a missing file")
            wheels_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, wheels_dir / source.name)
            url = f"file://{container_dir}/{source.name}"
        text = str(canonicalize_name(req.name))
        if extras:
            text += "[" + ",".join(sorted(extras)) + "]"
        text += f" @ {url}" if url else str(req.specifier)
        if req.marker is not None:
            text += ("; " if not url else " ; ") + str(req.marker)
        (envkit if is_envkit else model).append(text)
    return options + sorted(model), sorted(envkit)


def _copy_model(model_dir: Path, target: Path) -> None:
    """Copy the model with world-readable modes (the image runs it as a non-root user)."""
    try:
        shutil.copytree(model_dir, target, symlinks=False)
    except (shutil.Error, OSError) as exc:
        errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        why = f"{errors[0][0]}: {errors[0][2]}" if errors else str(exc)
        if len(why) > 300:
            why = why[:300] + "..."
        raise ModelFormatError(f"cannot copy the model into the build context: {why}") from None
    for dirpath, _dirnames, filenames in os.walk(target):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)


def write_context(
    directory: Path,
    *,
    plan: InstallPlan,
    python: str,
    base_image: str,
    ca_bundle: Path | None,
    model_dir: Path | None = None,
    env_vars: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> BuildContext:
    """Write a build context into the empty (or new) ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    model_env = directory / BUILD_DIR / "model-env"
    envkit_dir = directory / BUILD_DIR / "envkit"
    model_env.mkdir(parents=True)
    envkit_dir.mkdir(parents=True)
    wheels_dir, wheels_url = model_env / "wheels", f"{CONTAINER_BUILD_DIR}/model-env/wheels"
    if plan.require_hashes:
        # A lock: its hashed pins as they are; envkit (and its extras) installs after them.
        options, envkit_reqs = _rewrite_requirements(plan.unhashed, wheels_dir, wheels_url)
        model_reqs = list(plan.requirements)
        (model_env / "locked-pins.txt").write_text(
            "".join(f"{r}\n" for r in [*options, *plan.pins]), encoding="utf-8"
        )
    else:
        model_reqs, envkit_reqs = _rewrite_requirements(plan.requirements, wheels_dir, wheels_url)
    # The envkit wheel sits beside its requirement file, outside the model-env layer.
    envkit_reqs = [
        r.replace(f"{CONTAINER_BUILD_DIR}/model-env/wheels/", f"{CONTAINER_BUILD_DIR}/envkit/")
        for r in envkit_reqs
    ]
    for wheel in sorted((model_env / "wheels").glob("envkit-*.whl")):
        os.replace(wheel, envkit_dir / wheel.name)
    if (model_env / "wheels").is_dir() and not any((model_env / "wheels").iterdir()):
        (model_env / "wheels").rmdir()
    if not envkit_reqs:
        envkit_reqs = [f"envkit[serve]=={__version__}"]
    (model_env / "requirements.txt").write_text(
        "".join(f"{r}\n" for r in model_reqs), encoding="utf-8"
    )
    (envkit_dir / "requirements.txt").write_text("\n".join(envkit_reqs) + "\n", encoding="utf-8")

    prefix: list[str] = []
    if ca_bundle is not None:
        shutil.copyfile(ca_bundle, model_env / "ca-bundle.crt")
        bundle = f"{CONTAINER_BUILD_DIR}/model-env/ca-bundle.crt"
        prefix.append(
            f"export PIP_CERT={bundle} SSL_CERT_FILE={bundle} REQUESTS_CA_BUNDLE={bundle}"
        )
    pip = "python -m pip install --no-input"
    constraints = ""
    if plan.constraints:
        (model_env / "constraints.txt").write_text(
            "\n".join(plan.constraints) + "\n", encoding="utf-8"
        )
        constraints = f" -c {CONTAINER_BUILD_DIR}/model-env/constraints.txt"
    model_commands = list(prefix)
    if plan.build_dependencies:
        (model_env / "build-requirements.txt").write_text(
            "\n".join(plan.build_dependencies) + "\n", encoding="utf-8"
        )
        model_commands.append(f"{pip} -r {CONTAINER_BUILD_DIR}/model-env/build-requirements.txt")
    model_file = f"-r {CONTAINER_BUILD_DIR}/model-env/requirements.txt"
    hashes = " --require-hashes" if plan.require_hashes else ""
    if any(not r.startswith("-") for r in model_reqs):
        model_commands.append(f"{pip}{hashes} {model_file}{constraints}")
    if not model_commands:
        model_commands.append("echo 'the model lists no requirements besides envkit'")
    # envkit resolved with the model's requirements (as files: -r, or the locked pins: -c),
    # so that their pins hold.
    held = (
        f"-c {CONTAINER_BUILD_DIR}/model-env/locked-pins.txt" if plan.require_hashes else model_file
    )
    envkit_commands = [
        *prefix,
        f"{pip} {held} -r {CONTAINER_BUILD_DIR}/envkit/requirements.txt{constraints}",
    ]
    requirements = model_reqs + envkit_reqs

    model_name = model_dir.name if model_dir is not None else "(none: the env stage only)"
    env_doc = ""
    names = sorted(set(env_vars))
    if names:
        env_doc = (
            "# Environment variables the model reads at inference (recorded by name in\n"
            "# environment_variables.txt). Set them when you run the image, never here:\n"
            + "".join(f"#   ENV {name}\n" for name in names)
            + f"#   docker run {' '.join(f'-e {n}' for n in names)} ...\n"
            + f'LABEL org.envkit.expected-env="{",".join(names)}"\n'
        )
    extra_labels = "".join(
        f' \\\n      {key}="{_label_value(value)}"' for key, value in sorted((labels or {}).items())
    )
    text = string.Template(template_path().read_text(encoding="utf-8")).substitute(
        envkit_version=__version__,
        model_name=_label_value(model_name),
        base_image=base_image,
        python_minor=python_minor(python),
        uid=CONTAINER_UID,
        install_model_env=" \\\n && ".join(model_commands),
        install_envkit=" \\\n && ".join(envkit_commands),
        env_vars_doc=env_doc,
        model_labels=extra_labels,
    )
    (directory / "Dockerfile").write_text(text, encoding="utf-8")
    (directory / ".dockerignore").write_text("Dockerfile\n.dockerignore\n", encoding="utf-8")
    if model_dir is not None:
        _copy_model(model_dir, directory / MODEL_DIR)
    return BuildContext(
        directory=directory,
        base_image=base_image,
        python=python,
        requirements=requirements,
        env_vars=names,
        ca_bundle=ca_bundle,
        has_model=model_dir is not None,
    )


def _label_value(value: str) -> str:
    return re.sub(r'["\\\n$`]', "_", value)


def model_install_plan(
    model_dir: Path, *, python: str | None = None
) -> tuple[EnvSpec, InstallPlan]:
    """The model's environment spec and what the image installs: its requirements plus
    ``envkit[serve]`` from a wheel of the running envkit (envkit is not on any index)."""
    from envkit.models.model import MLMODEL_FILE_NAME, Model
    from envkit.sandbox.backends.base import install_plan
    from envkit.sandbox.cache import EnvCache
    from envkit.sandbox.selfwheel import build_self_wheel
    from envkit.sandbox.spec import apply_overrides, read_env_spec

    model = Model._read(model_dir / MLMODEL_FILE_NAME)
    conf = model.flavors.get("python_function")
    if conf is None:
        have = ", ".join(sorted(model.flavors)) or "none"
        raise UsageError(
            f"the model has no python_function flavor (its flavors: {have}); the scoring "
            "server serves models it can load as a pyfunc"
        )
    spec = read_env_spec(
        model_dir,
        env_manager="docker",
        flavor_env=conf.get("env") if isinstance(conf.get("env"), dict) else None,
        python_version_hint=conf.get("python_version"),
    )
    if python:
        spec = spec.resolved(python=python)
    from dataclasses import replace

    wheel = build_self_wheel(EnvCache().root)
    requirements = apply_overrides(spec.requirements, [f"envkit[serve]=={wheel.version}"])
    spec = replace(spec, requirements=requirements.requirements).resolved(runner=wheel.runner_id)
    return spec, install_plan(spec, wheel)


def _prepare_model(model_uri: str | os.PathLike[str]) -> Path:
    """The model's directory, refused when a symlink in it leads outside (the image would
    get a copy of what it points to)."""
    from envkit._fs import check_tree_inside
    from envkit.models.uri import resolve_model_uri

    model_dir = resolve_model_uri(model_uri)
    check_tree_inside(model_dir)
    return model_dir


def _check_output_dir(output_dir: str | os.PathLike[str], model_dir: Path) -> Path:
    """``output_dir`` as an absolute path: new or empty, and not inside the model (the
    context holds a copy of the model, which would then copy itself)."""
    out = Path(output_dir).expanduser().absolute()
    resolved_out = out.resolve()
    resolved_model = model_dir.resolve()
    if resolved_out == resolved_model or resolved_model in resolved_out.parents:
        raise UsageError(
            f"the output directory {output_dir} is inside the model {model_dir}; write the "
            "build context somewhere else (it holds a copy of the model)"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{output_dir} exists and is not an empty directory")
    return out


def generate_dockerfile(
    model_uri: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    base_image: str | None = None,
    ca_bundle: str | os.PathLike[str] | None = "auto",
    python: str | None = None,
) -> BuildContext:
    """Write a build context for the model's serving image into ``output_dir`` (new or empty,
    not inside the model): ``Dockerfile``, ``envkit-build/`` (requirements, wheels, CA bundle)
    and ``model/``. The context is written into a temporary sibling and renamed into place, so
    a failure leaves nothing."""
    from dataclasses import replace

    from envkit.deps.envvars import read_env_vars_file

    model_dir = _prepare_model(model_uri)
    out = _check_output_dir(output_dir, model_dir)
    bundle = resolve_ca_bundle(ca_bundle)
    spec, plan = model_install_plan(model_dir, python=python)
    base = default_base_image(spec.python, base_image)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        context = write_context(
            staging / "context",
            plan=plan,
            python=spec.python,
            base_image=base,
            ca_bundle=bundle,
            model_dir=model_dir,
            env_vars=read_env_vars_file(model_dir),
            labels={LABEL_VERSION: __version__},
        )
        if out.exists():
            out.rmdir()  # empty (checked above): the rename needs its place
        os.replace(staging / "context", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return replace(context, directory=out)


# --- building ------------------------------------------------------------------------------------


@dataclass
class ImageBuild:
    """A built image: its tag and ID, size, how long the build took and what it reused."""

    tag: str
    image_id: str
    size_bytes: int
    duration: float
    base_image: str
    python: str
    steps: int = 0
    cached_steps: int = 0
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "image_id": self.image_id,
            "size_bytes": self.size_bytes,
            "duration": round(self.duration, 3),
            "base_image": self.base_image,
            "python": self.python,
            "steps": self.steps,
            "cached_steps": self.cached_steps,
        }


_MISSING_BASE = re.compile(
    r"(pull access denied|repository does not exist|not found: manifest unknown|"
    r"manifest for .* not found|no such host|dial tcp|lookup .* on|TLS handshake timeout|"
    r"i/o timeout|connection refused)",
    re.IGNORECASE,
)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class BuildLog:
    """What the builder said: its output, and the error that ended it (if one did)."""

    text: str = ""
    error: str = ""
    timed_out: bool = False
    duration: float = 0.0


def _stream_build(client: DockerClient, deadline: float | None, **options: Any) -> BuildLog:
    """Run one build, collecting its output until it ends or ``deadline`` passes."""
    import requests.exceptions

    log = BuildLog()
    lines: list[str] = []
    remaining = None if deadline is None else max(deadline - time.monotonic(), 1.0)
    stream = None
    try:
        # The HTTP timeout bounds each read: a silent step cannot outlast the deadline.
        stream = client.api.build(decode=True, timeout=remaining, **options)
        for chunk in stream:
            if "stream" in chunk:
                lines.append(str(chunk["stream"]))
            elif "status" in chunk and not chunk.get("progressDetail"):  # pulling the base
                lines.append(f"{chunk.get('id', '')} {chunk['status']}".strip() + "\n")
            if "error" in chunk:
                log.error = str(chunk.get("errorDetail", {}).get("message") or chunk["error"])
            if deadline is not None and time.monotonic() > deadline:
                log.timed_out = True
                break
    except requests.exceptions.ConnectionError:  # a read timed out: the deadline passed
        if deadline is None or time.monotonic() < deadline:
            raise
        log.timed_out = True
    finally:
        if stream is not None:
            stream.close()
    log.text = _ANSI.sub("", "".join(lines))  # the builder colours the steps' stderr
    return log


def docker_build(
    context: BuildContext,
    tag: str,
    *,
    target: str | None = None,
    labels: Mapping[str, str] | None = None,
    no_cache: bool = False,
    timeout: float | None = DEFAULT_BUILD_TIMEOUT,
) -> BuildLog:
    """Build the context with the host's network (the install step needs the index) and
    name the image ``tag``; a failure raises :class:`EnvironmentBuildError`."""
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    with engine() as client:
        from docker.errors import APIError

        try:
            log = _stream_build(
                client,
                deadline,
                path=str(context.directory),
                tag=tag,
                target=target,
                labels=dict(labels or {}),
                nocache=no_cache,
                network_mode="host",
                rm=True,
                forcerm=True,  # no intermediate containers left behind by a failed step
            )
        except APIError as exc:
            log = BuildLog(error=str(exc.explanation or exc))
    log.duration = time.monotonic() - start
    if not log.error and not log.timed_out:
        return log
    text = log.text + log.error
    for line in text.splitlines():
        if line.strip().startswith("envkit:"):
            raise EnvironmentBuildError(
                f"the image cannot be built: {line.strip()[len('envkit:') :].strip()} "
                f"(base image {context.base_image}; set it with --base-image or "
                f"{ENV_BASE_IMAGE})",
                detail=_tail(text),
            )
    if log.timed_out:
        raise EnvironmentBuildError(
            f"docker build timed out after {log.duration:.0f}s", detail=_tail(text)
        )
    from envkit._subprocess import last_error_line

    if ("Step 1/" in log.text and "Step 2/" not in log.text) or _MISSING_BASE.search(log.error):
        raise EnvironmentBuildError(
            f"the base image {context.base_image} cannot be had: {log.error}; pull or build it "
            f"(docker/build-base-image.sh builds one without a registry) and pass it with "
            f"--base-image or {ENV_BASE_IMAGE}",
            detail=_tail(text),
        )
    # The installer's own error line says more than the engine's "returned a non-zero code".
    installer = last_error_line(log.text)
    last = installer if "error" in installer.lower() else log.error
    raise EnvironmentBuildError(
        f"docker build failed: {last}; check the model's requirements (the install step's "
        "output is in --verbose)",
        detail=_tail(text),
    )


def _tail(text: str, lines: int = 40) -> str:
    from envkit.errors import tail

    return tail(text, lines)


def image_python(ref: str) -> str:
    """The Python version of the image's virtualenv."""
    outcome = run_container(
        ref,
        ["-c", "import platform; print(platform.python_version())"],
        entrypoint=[CONTAINER_PYTHON],
        network_mode="none",
        timeout=120,
    )
    return outcome.stdout.strip() if outcome.ok else ""


def build_image(
    model_uri: str | os.PathLike[str],
    tag: str,
    *,
    base_image: str | None = None,
    ca_bundle: str | os.PathLike[str] | None = "auto",
    python: str | None = None,
    no_cache: bool = False,
    timeout: float | None = DEFAULT_BUILD_TIMEOUT,
    progress: Callable[[str, str], None] | None = None,
) -> ImageBuild:
    """Build the model's serving image ``tag`` (the ``model`` stage of the Dockerfile)."""
    from envkit.deps.envvars import read_env_vars_file

    if not re.fullmatch(r"[a-z0-9][a-z0-9._/:@-]*", tag or ""):
        raise UsageError(f"invalid image tag {tag!r} (lower-case name[:tag])")
    model_dir = _prepare_model(model_uri)
    require_engine()
    notify = progress or (lambda _event, _message: None)
    spec, plan = model_install_plan(model_dir, python=python)
    base = default_base_image(spec.python, base_image)
    from envkit.sandbox.tempdirs import tempdir

    # Named after this process: what a killed build leaves, the next envkit run removes.
    with tempdir("docker") as tmp:
        context = write_context(
            tmp / "context",
            plan=plan,
            python=spec.python,
            base_image=base,
            ca_bundle=resolve_ca_bundle(ca_bundle),
            model_dir=model_dir,
            env_vars=read_env_vars_file(model_dir),
            labels={LABEL_VERSION: __version__},
        )
        notify("build", f"docker build {tag} (base {base})")
        log = docker_build(context, tag, no_cache=no_cache, timeout=timeout)
    info = image_inspect(tag) or {}
    steps, cached = count_steps(log.text)
    return ImageBuild(
        tag=tag,
        image_id=str(info.get("Id", "")),
        size_bytes=int(info.get("Size") or 0),
        duration=log.duration,
        base_image=base,
        python=image_python(tag),
        steps=steps,
        cached_steps=cached,
        log=log.text,
    )


def count_steps(log: str) -> tuple[int, int]:
    """(steps, steps taken from the cache) in a classic builder's output."""
    steps = len(re.findall(r"^Step \d+/\d+ :", log, re.MULTILINE))
    cached = len(re.findall(r"^ ---> Using cache", log, re.MULTILINE))
    return steps, cached
