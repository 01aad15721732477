"""The build context of a model's image: a directory holding the Dockerfile (rendered from the
template ``docker/templates/Dockerfile.in``), the requirements and wheels to install
(``envkit-build/``) and the model (``model/``); and the configuration it is built with.

The Dockerfile has two stages: ``env`` (a Python base image, a virtualenv, a non-root user, the
model's requirements plus ``envkit[serve]``) and ``model`` (``env`` + the model + the scoring
server as entrypoint). ``envkit validate --env-manager docker`` builds ``env`` and mounts the
model; ``envkit build-docker`` builds ``model``. Both write the ``env`` stage identically, so
they share its layers: validating a model warms the cache of the image that will serve it.

Only classic-builder syntax is used (no ``RUN --mount``, heredocs or secrets). The build runs
with the host's network (the install step needs PyPI; nothing else runs with the network). A CA
bundle (``--ca-bundle``; by default the one ``ENVKIT_DOCKER_CA_BUNDLE``, ``PIP_CERT``,
``SSL_CERT_FILE`` or ``REQUESTS_CA_BUNDLE`` names) is copied into the build so that pip works
behind a TLS-intercepting proxy; it is used by the install step only, not trusted at run time.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envkit._version import __version__
from envkit.errors import EnvironmentBuildError, ModelFormatError, UsageError
from envkit.sandbox.tempdirs import CONTAINER_UID

if TYPE_CHECKING:
    from envkit.sandbox.backends.base import InstallPlan
    from envkit.sandbox.spec import EnvSpec

__all__ = [
    "CONTAINER_MODEL_DIR",
    "CONTAINER_PYTHON",
    "CONTAINER_UID",
    "BuildContext",
    "check_image_reference",
    "default_base_image",
    "generate_dockerfile",
    "model_install_plan",
    "prepare_model",
    "resolve_ca_bundle",
    "write_context",
]

ENV_BASE_IMAGE = "ENVKIT_DOCKER_BASE_IMAGE"
ENV_CA_BUNDLE = "ENVKIT_DOCKER_CA_BUNDLE"
CA_BUNDLE_SOURCES = (ENV_CA_BUNDLE, "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")

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
    package = Path(__file__).resolve().parent.parent  # envkit/
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


def _copy_model(model_dir: Path, target: Path, links: Mapping[str, str] | None = None) -> None:
    """Copy the model with world-readable modes (the image runs it as a non-root user).

    ``links`` maps top-level entries of the model to paths inside the image: they are not
    copied but become symlinks there (a wheeled model's ``wheels/``, which the environment
    layer already holds: the image carries them once)."""
    links = dict(links or {})

    def linked(directory: str, names: list[str]) -> set[str]:
        return set(links) & set(names) if Path(directory) == model_dir else set()

    try:
        shutil.copytree(model_dir, target, symlinks=False, ignore=linked if links else None)
    except (shutil.Error, OSError) as exc:
        errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        why = f"{errors[0][0]}: {errors[0][2]}" if errors else str(exc)
        if len(why) > 300:
            why = why[:300] + "..."
        raise ModelFormatError(f"cannot copy the model into the build context: {why}") from None
    for name, inside_image in sorted(links.items()):
        if (model_dir / name).exists():
            os.symlink(inside_image, target / name)
    for dirpath, _dirnames, filenames in os.walk(target):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):  # a link of ``links``: its target is in the image
                os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)


def _carried_wheels(directory: Path, model_dir: Path) -> dict[str, str]:
    """A wheeled model's ``wheels/``, when the environment layer holds the same wheels: the
    model's copy links there instead of carrying them a second time."""
    from envkit.sandbox.wheels import WHEELS_DIR

    installed = directory / BUILD_DIR / "model-env" / "wheels"
    carried = model_dir / WHEELS_DIR
    if not (installed.is_dir() and carried.is_dir()):
        return {}
    names = {p.name for p in carried.iterdir() if not p.name.startswith("envkit-")}
    if not names <= {p.name for p in installed.iterdir()}:
        return {}
    return {WHEELS_DIR: f"{CONTAINER_BUILD_DIR}/model-env/wheels"}


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
    model_reqs, envkit_reqs = _write_requirements(directory / BUILD_DIR, plan)
    model_commands, envkit_commands = _install_steps(
        directory / BUILD_DIR / "model-env", plan, model_reqs, ca_bundle
    )
    model_name = model_dir.name if model_dir is not None else "(none: the env stage only)"
    names = sorted(set(env_vars))
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
        env_vars_doc=_env_vars_doc(names),
        model_labels=extra_labels,
    )
    (directory / "Dockerfile").write_text(text, encoding="utf-8")
    (directory / ".dockerignore").write_text("Dockerfile\n.dockerignore\n", encoding="utf-8")
    if model_dir is not None:
        _copy_model(model_dir, directory / MODEL_DIR, _carried_wheels(directory, model_dir))
    return BuildContext(
        directory=directory,
        base_image=base_image,
        python=python,
        requirements=model_reqs + envkit_reqs,
        env_vars=names,
        ca_bundle=ca_bundle,
        has_model=model_dir is not None,
    )


def _write_requirements(build_dir: Path, plan: InstallPlan) -> tuple[list[str], list[str]]:
    """Write ``model-env/`` and ``envkit/`` of ``build_dir`` (requirement files, wheels):
    returns (the model's requirements, envkit's) as the image installs them."""
    model_env = build_dir / "model-env"
    envkit_dir = build_dir / "envkit"
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
    for wheel in sorted(wheels_dir.glob("envkit-*.whl")):
        os.replace(wheel, envkit_dir / wheel.name)
    if wheels_dir.is_dir() and not any(wheels_dir.iterdir()):
        wheels_dir.rmdir()
    if not envkit_reqs:
        envkit_reqs = [f"envkit[serve]=={__version__}"]
    (model_env / "requirements.txt").write_text(
        "".join(f"{r}\n" for r in model_reqs), encoding="utf-8"
    )
    (envkit_dir / "requirements.txt").write_text("\n".join(envkit_reqs) + "\n", encoding="utf-8")
    return model_reqs, envkit_reqs


def _install_steps(
    model_env: Path, plan: InstallPlan, model_reqs: Sequence[str], ca_bundle: Path | None
) -> tuple[list[str], list[str]]:
    """The shell commands of the two install layers (the model's requirements, then envkit's),
    writing the files they read (CA bundle, constraints, build dependencies) into
    ``model_env``."""
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
    return model_commands, envkit_commands


def _env_vars_doc(names: Sequence[str]) -> str:
    """The Dockerfile's note on the environment variables the model reads (names only)."""
    if not names:
        return ""
    return (
        "# Environment variables the model reads at inference (recorded by name in\n"
        "# environment_variables.txt). Set them when you run the image, never here:\n"
        + "".join(f"#   ENV {name}\n" for name in names)
        + f"#   docker run {' '.join(f'-e {n}' for n in names)} ...\n"
        + f'LABEL org.envkit.expected-env="{",".join(names)}"\n'
    )


def _label_value(value: str) -> str:
    return re.sub(r'["\\\n$`]', "_", value)


def model_install_plan(
    model_dir: Path, *, python: str | None = None
) -> tuple[EnvSpec, InstallPlan]:
    """The model's environment spec and what the image installs: its requirements plus
    ``envkit[serve]`` from a wheel of the running envkit (envkit is not on any index)."""
    from envkit.models.model import MLMODEL_FILE_NAME, Model
    from envkit.sandbox.provision import plan_environment

    model = Model._read(model_dir / MLMODEL_FILE_NAME)
    if "python_function" not in model.flavors:
        have = ", ".join(sorted(model.flavors)) or "none"
        raise UsageError(
            f"the model has no python_function flavor (its flavors: {have}); the scoring "
            "server serves models it can load as a pyfunc"
        )
    plan = plan_environment(
        model_dir, model, env_manager="docker", envkit_extras=("serve",), python=python
    )
    return plan.spec, plan.install


def prepare_model(model_uri: str | os.PathLike[str]) -> Path:
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

    model_dir = prepare_model(model_uri)
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
