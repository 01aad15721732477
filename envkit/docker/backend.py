"""The ``docker`` backend: the model's environment is a Docker image; the model runs in a
locked-down container.

The image is the ``env`` stage of the Dockerfile ``envkit build-docker`` builds (same layers:
validating warms the cache of the serving image). It is labelled with the spec's cache key
and reused by that label, even when the environment cache was emptied. The cache entry holds
``image.json`` (image ID, tag, base image); the entry is stale when its image is gone or was
built from another base image than the one configured now.

The model runs with no network, a read-only root (``/tmp`` is a tmpfs), a non-root user,
all capabilities dropped, no new privileges, and memory/CPU/PID limits; a run that outlasts
its timeout is killed, and every container is removed. The paths the run needs are
bind-mounted at the same place: those it reads (``paths``: the model, the input) read-only,
those it writes (``writable_paths``: the runner's work directory) read-write. The engine is
driven through the ``docker`` SDK (``envkit[docker]``).

Configuration: the base image (``--base-image``, else ``ENVKIT_DOCKER_BASE_IMAGE``, else
``python:<X.Y>-slim``) and the CA bundle of the install step (``--ca-bundle``, else
``ENVKIT_DOCKER_CA_BUNDLE``, else ``PIP_CERT``/``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``;
``none`` to disable) are backend options (:attr:`DockerBackend.options`); the container's
limits are ``ENVKIT_DOCKER_MEMORY`` (default ``2g``) and ``ENVKIT_DOCKER_CPUS`` (default
``1``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from envkit._subprocess import Outcome
from envkit.docker import context as ctx
from envkit.docker import image as img
from envkit.docker.containers import (
    DEFAULT_MEMORY,
    ENV_MEMORY,
    container_limits,
    run_contained,
)
from envkit.docker.engine import engine_unavailable_reason, engine_version
from envkit.errors import EnvironmentBuildError
from envkit.sandbox.backends.base import Backend, Environment, InstallPlan, PythonChoice
from envkit.sandbox.cache import BuildInfo

# What a docker run always holds (envkit.docker.containers.run_contained).
DOCKER_CONTAINMENT: dict[str, object] = {
    "environment": {"held": True, "detail": "only the variables passed (--env) and the image's"},
    "network": {"held": True, "detail": "--network none"},
    "filesystem": {
        "held": True,
        "detail": "read-only root file system; the model read-only; only the work directory "
        "writable",
    },
    "user": {
        "held": True,
        "detail": "a non-root user, every capability dropped, no-new-privileges",
    },
    "limits": {"held": True, "detail": "the container's memory, CPU and process limits"},
}

if TYPE_CHECKING:
    from envkit.sandbox.contain import ContainmentPolicy
    from envkit.sandbox.spec import EnvSpec

__all__ = ["DockerBackend"]

IMAGE_RECORD = "image.json"
IMAGE_REPOSITORY = "envkit-env"


class DockerBackend(Backend):
    name = "docker"
    description = "a Docker image built from the model's requirements; runs without network"
    needs_interpreter = False  # the base image brings Python
    cacheable = True
    isolated = True
    options = ("base_image", "ca_bundle")

    def __init__(self) -> None:
        self._reason: str | None = None
        self._checked = False
        self.base_image: str | None = None  # None: $ENVKIT_DOCKER_BASE_IMAGE or python:X.Y-slim
        self.ca_bundle: str | None = "auto"

    def configure(self, **options: object) -> None:
        """Take ``base_image`` and ``ca_bundle`` (as ``--base-image``/``--ca-bundle``); both
        are checked here, before anything is built."""
        # The run's limits too: a typo in them is bad usage, found before a build.
        container_limits()
        if options.get("base_image") is not None:
            self.base_image = ctx.check_image_reference(str(options["base_image"]))
        if options.get("ca_bundle") is not None:
            ctx.resolve_ca_bundle(str(options["ca_bundle"]))  # a missing file fails now
            self.ca_bundle = str(options["ca_bundle"])

    def killed_hint(self, returncode: int | None, extra: Mapping[str, object]) -> str | None:
        if extra.get("oom_killed") or returncode == 137:
            limit = os.environ.get(ENV_MEMORY) or DEFAULT_MEMORY
            return (
                f"the model's container was killed (exit code {returncode}), "
                + ("out of memory" if extra.get("oom_killed") else "probably out of memory")
                + f": it may use {limit}; raise the limit with {ENV_MEMORY} (e.g. "
                f"{ENV_MEMORY}=8g)"
            )
        return super().killed_hint(returncode, extra)

    def unavailable_reason(self) -> str | None:
        if not self._checked:
            self._reason = engine_unavailable_reason()
            self._checked = True
        return self._reason

    def tool_versions(self) -> dict[str, str]:
        return {"docker": engine_version()}

    # -- building --------------------------------------------------------------------------------

    def create(
        self,
        spec: EnvSpec,
        target: Path,
        *,
        python: PythonChoice,
        plan: InstallPlan,
        timeout: float | None = None,
    ) -> BuildInfo:
        base = ctx.default_base_image(spec.python, self.base_image)
        labels = {ctx.LABEL_SPEC_KEY: spec.key, ctx.LABEL_BASE_IMAGE: base}
        tag = f"{IMAGE_REPOSITORY}:{spec.key}"
        start = time.perf_counter()
        existing = img.find_images(labels)
        reused = bool(existing)
        if reused:
            image_id = existing[0]
            img.tag_image(image_id, tag)
        else:
            image_id = self._build(spec, target, plan, tag, base, labels, timeout)
        timings = {"install": time.perf_counter() - start}
        image_python = img.image_python(image_id)
        record = {
            "image": image_id,
            "tag": tag,
            "base_image": base,
            "python": spec.python,
            "reused": reused,
        }
        (target / IMAGE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return BuildInfo(
            python=image_python or spec.python,
            python_path=ctx.CONTAINER_PYTHON,
            tools=self.tool_versions(),
            timings=timings,
            extra={"image": tag, "image_id": image_id, "base_image": base, "reused": reused},
        )

    def _build(
        self,
        spec: EnvSpec,
        target: Path,
        plan: InstallPlan,
        tag: str,
        base: str,
        labels: Mapping[str, str],
        timeout: float | None,
    ) -> str:
        """Build the ``env`` stage as ``tag``; returns the image's ID."""
        # The context (it may hold index credentials) lives in the build directory: a killed
        # build leaves it where the cache removes unfinished builds.
        context_dir = target / ".context"
        try:
            context = ctx.write_context(
                context_dir,
                plan=plan,
                python=spec.python,
                base_image=base,
                ca_bundle=ctx.resolve_ca_bundle(self.ca_bundle),
            )
            img.docker_build(
                context,
                tag,
                target="env",
                labels={**labels, ctx.LABEL_VERSION: spec.runner},
                timeout=timeout,
            )
        finally:
            shutil.rmtree(context_dir, ignore_errors=True)
        info = img.image_inspect(tag)
        if info is None:
            raise EnvironmentBuildError(f"docker build reported success but {tag} is missing")
        return str(info["Id"])

    def open(self, path: Path) -> Environment:
        record: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            record = json.loads((path / IMAGE_RECORD).read_text(encoding="utf-8"))
        return Environment(
            path=path,
            python=Path(ctx.CONTAINER_PYTHON),
            backend=self.name,
            python_flags=("-I",),
            isolated=True,
            extra=dict(record),
        )

    def check(self, env: Environment) -> str | None:
        image = str(env.extra.get("image") or "")
        if not image:
            return "it has no image record"
        if img.image_inspect(image) is None:
            return f"its image {env.extra.get('tag', image)} no longer exists"
        recorded = str(env.extra.get("base_image") or "")
        python = str(env.extra.get("python") or "")
        if recorded and python:
            wanted = ctx.default_base_image(python, self.base_image)
            if wanted != recorded:
                return f"it was built from {recorded}, and the base image is now {wanted}"
        return None

    # -- running ---------------------------------------------------------------------------------

    def run(
        self,
        env: Environment,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        paths: Sequence[Path] = (),
        writable_paths: Sequence[Path] = (),
        contain: ContainmentPolicy | None = None,
    ) -> Outcome:
        """The container is always locked down (``contain`` changes nothing): the outcome
        says so in ``extra["containment"]``."""
        outcome = run_contained(
            str(env.extra.get("image") or env.extra.get("tag")),
            self.command(env, argv),
            cwd=cwd,
            timeout=timeout,
            environment=extra_env,
            paths=paths,
            writable_paths=writable_paths,
        )
        outcome.extra["containment"] = DOCKER_CONTAINMENT
        return outcome
