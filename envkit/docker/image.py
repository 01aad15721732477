"""Images: a build context built by the engine (classic builder, the host's network for the
install step, a deadline), what a failed build means in a line, the serving image of a model
(``envkit build-docker``), and the few image queries the docker backend needs."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envkit._version import __version__
from envkit.docker.containers import run_container
from envkit.docker.context import (
    CONTAINER_PYTHON,
    ENV_BASE_IMAGE,
    LABEL_VERSION,
    BuildContext,
    default_base_image,
    model_install_plan,
    prepare_model,
    resolve_ca_bundle,
    write_context,
)
from envkit.docker.engine import engine, require_engine
from envkit.errors import EnvironmentBuildError, UsageError

if TYPE_CHECKING:
    from docker.client import DockerClient

__all__ = [
    "BuildLog",
    "ImageBuild",
    "build_image",
    "docker_build",
    "find_images",
    "image_inspect",
    "image_python",
    "remove_image",
    "tag_image",
]

DEFAULT_BUILD_TIMEOUT = 1800.0


# --- the engine's images -------------------------------------------------------------------------


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
    if log.error or log.timed_out:
        raise _build_failure(log, context.base_image)
    return log


def _build_failure(log: BuildLog, base_image: str) -> EnvironmentBuildError:
    """The error a failed (or timed out) build is, in one line that says what to do."""
    from envkit._subprocess import last_error_line
    from envkit.errors import tail

    text = log.text + log.error
    detail = tail(text, 40)
    for line in text.splitlines():
        if line.strip().startswith("envkit:"):
            return EnvironmentBuildError(
                f"the image cannot be built: {line.strip()[len('envkit:') :].strip()} "
                f"(base image {base_image}; set it with --base-image or {ENV_BASE_IMAGE})",
                detail=detail,
            )
    if log.timed_out:
        return EnvironmentBuildError(
            f"docker build timed out after {log.duration:.0f}s", detail=detail
        )
    if ("Step 1/" in log.text and "Step 2/" not in log.text) or _MISSING_BASE.search(log.error):
        return EnvironmentBuildError(
            f"the base image {base_image} cannot be had: {log.error}; pull or build it "
            f"(docker/build-base-image.sh builds one without a registry) and pass it with "
            f"--base-image or {ENV_BASE_IMAGE}",
            detail=detail,
        )
    # The installer's own error line says more than the engine's "returned a non-zero code".
    installer = last_error_line(log.text)
    last = installer if "error" in installer.lower() else log.error
    return EnvironmentBuildError(
        f"docker build failed: {last}; check the model's requirements (the install step's "
        "output is in --verbose)",
        detail=detail,
    )


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
    trust_model: bool = False,
    trusted_types: Sequence[str] = (),
) -> ImageBuild:
    """Build the model's serving image ``tag`` (the ``model`` stage of the Dockerfile).

    The model's pickles are scanned on the host first: a dangerous one raises
    :class:`~envkit.errors.UnsafeModelError` unless ``trust_model`` or its globals are in
    ``trusted_types``. (The image's server scans again when it loads the model: run a trusted
    one with ``-e ENVKIT_TRUST_MODEL=1``.)
    """
    from envkit.deps.envvars import read_env_vars_file
    from envkit.models.scan import ModelTrust, ensure_safe
    from envkit.sandbox.tempdirs import tempdir

    if not re.fullmatch(r"[a-z0-9][a-z0-9._/:@-]*", tag or ""):
        raise UsageError(f"invalid image tag {tag!r} (lower-case name[:tag])")
    model_dir = prepare_model(model_uri)
    ensure_safe(model_dir, ModelTrust.of(trust_model, trusted_types))
    require_engine()
    notify = progress or (lambda _event, _message: None)
    spec, plan = model_install_plan(model_dir, python=python)
    base = default_base_image(spec.python, base_image)
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
