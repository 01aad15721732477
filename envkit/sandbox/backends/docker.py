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
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from envkit._subprocess import Outcome
from envkit.errors import EnvironmentBuildError, UsageError
from envkit.sandbox.backends.base import Backend, Environment, InstallPlan
from envkit.sandbox.cache import BuildInfo

if TYPE_CHECKING:
    from envkit.sandbox.interpreters import Interpreter
    from envkit.sandbox.spec import EnvSpec

IMAGE_RECORD = "image.json"
IMAGE_REPOSITORY = "envkit-env"
ENV_MEMORY = "ENVKIT_DOCKER_MEMORY"
ENV_CPUS = "ENVKIT_DOCKER_CPUS"
DEFAULT_MEMORY = "2g"
DEFAULT_CPUS = "1"
PIDS_LIMIT = 512


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
        from envkit import docker_build as db

        # The run's limits too: a typo in them is bad usage, found before a build.
        _memory(os.environ.get(ENV_MEMORY) or DEFAULT_MEMORY)
        _nano_cpus(os.environ.get(ENV_CPUS) or DEFAULT_CPUS)
        if options.get("base_image") is not None:
            self.base_image = db.check_image_reference(str(options["base_image"]))
        if options.get("ca_bundle") is not None:
            db.resolve_ca_bundle(str(options["ca_bundle"]))  # a missing file fails now
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
            from envkit.docker_build import engine_unavailable_reason

            self._reason = engine_unavailable_reason()
            self._checked = True
        return self._reason

    def tool_versions(self) -> dict[str, str]:
        from envkit.docker_build import engine_version

        return {"docker": engine_version()}

    # -- building --------------------------------------------------------------------------------

    def create(
        self,
        spec: EnvSpec,
        target: Path,
        *,
        interpreter: Interpreter | None,
        plan: InstallPlan,
        timeout: float | None = None,
    ) -> BuildInfo:
        import shutil

        from envkit import docker_build as db

        base = db.default_base_image(spec.python, self.base_image)
        labels = {db.LABEL_SPEC_KEY: spec.key, db.LABEL_BASE_IMAGE: base}
        tag = f"{IMAGE_REPOSITORY}:{spec.key}"
        timings: dict[str, float] = {}
        start = time.perf_counter()
        existing = db.find_images(labels)
        reused = bool(existing)
        if reused:
            image_id = existing[0]
            db.tag_image(image_id, tag)
        else:
            # The context (it may hold index credentials) lives in the build directory: a killed
            # build leaves it where the cache removes unfinished builds.
            context_dir = target / ".context"
            try:
                context = db.write_context(
                    context_dir,
                    plan=plan,
                    python=spec.python,
                    base_image=base,
                    ca_bundle=db.resolve_ca_bundle(self.ca_bundle),
                )
                db.docker_build(
                    context,
                    tag,
                    target="env",
                    labels={**labels, db.LABEL_VERSION: spec.runner},
                    timeout=timeout,
                )
            finally:
                shutil.rmtree(context_dir, ignore_errors=True)
            info = db.image_inspect(tag)
            if info is None:
                raise EnvironmentBuildError(f"docker build reported success but {tag} is missing")
            image_id = str(info["Id"])
        timings["install"] = time.perf_counter() - start
        python = db.image_python(image_id)
        record = {
            "image": image_id,
            "tag": tag,
            "base_image": base,
            "python": spec.python,
            "reused": reused,
        }
        (target / IMAGE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return BuildInfo(
            python=python or spec.python,
            python_path=db.CONTAINER_PYTHON,
            tools=self.tool_versions(),
            timings=timings,
            extra={"image": tag, "image_id": image_id, "base_image": base, "reused": reused},
        )

    def open(self, path: Path) -> Environment:
        from envkit.docker_build import CONTAINER_PYTHON

        record: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            record = json.loads((path / IMAGE_RECORD).read_text(encoding="utf-8"))
        return Environment(
            path=path,
            python=Path(CONTAINER_PYTHON),
            backend=self.name,
            python_flags=("-I",),
            isolated=True,
            extra=dict(record),
        )

    def check(self, env: Environment) -> str | None:
        from envkit import docker_build as db

        image = str(env.extra.get("image") or "")
        if not image:
            return "it has no image record"
        if db.image_inspect(image) is None:
            return f"its image {env.extra.get('tag', image)} no longer exists"
        recorded = str(env.extra.get("base_image") or "")
        python = str(env.extra.get("python") or "")
        if recorded and python:
            wanted = db.default_base_image(python, self.base_image)
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
    ) -> Outcome:
        from envkit import docker_build as db

        writable = list(dict.fromkeys(Path(p).absolute() for p in writable_paths))
        mounts = {path: "rw" for path in writable}
        for path in paths:
            mounts.setdefault(Path(path).absolute(), "ro")
        workdir = Path(cwd).absolute() if cwd is not None else None
        if workdir is not None and not any(_within(workdir, mount) for mount in mounts):
            mounts[workdir] = "ro"
        user = _container_user()
        with _owned_by_container(writable, user):
            return db.run_container(
                str(env.extra.get("image") or env.extra.get("tag")),
                self.command(env, argv),
                timeout=timeout,
                name=f"envkit-run-{uuid.uuid4().hex[:12]}",
                # Values go to the engine in the API request, never on a command line.
                environment={
                    "PYTHONNOUSERSITE": "1",
                    "PYTHONIOENCODING": "utf-8",
                    "HOME": "/tmp",
                    **(extra_env or {}),
                },
                volumes={str(p): {"bind": str(p), "mode": mode} for p, mode in mounts.items()},
                working_dir=str(workdir) if workdir is not None else None,
                network_mode="none",
                read_only=True,
                tmpfs={"/tmp": "rw,nosuid,nodev,size=512m"},
                user=user,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit=_memory(os.environ.get(ENV_MEMORY) or DEFAULT_MEMORY),
                nano_cpus=_nano_cpus(os.environ.get(ENV_CPUS) or DEFAULT_CPUS),
                pids_limit=PIDS_LIMIT,
            )


def _memory(limit: str) -> str:
    """``ENVKIT_DOCKER_MEMORY``: a size the engine takes (``512m``, ``2g``, bytes)."""
    if not re.fullmatch(r"\d+(\.\d+)?[bkmgBKMG]?", limit.strip()):
        raise UsageError(f"{ENV_MEMORY}={limit!r} is not a memory size (e.g. 512m, 2g)")
    return limit.strip()


def _nano_cpus(cpus: str) -> int:
    try:
        value = float(cpus)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UsageError(f"{ENV_CPUS}={cpus!r} is not a positive number of CPUs")
    return int(value * 1e9)


def _within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _container_user() -> str:
    """This user when it is not root; else the image's non-root user."""
    from envkit.docker_build import CONTAINER_UID

    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return f"{os.geteuid()}:{os.getegid()}"
    return f"{CONTAINER_UID}:{CONTAINER_UID}"


@contextlib.contextmanager
def _owned_by_container(paths: Sequence[Path], user: str) -> Iterator[None]:
    """As root, hand the writable directories to the container's user for the run."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0) or user.startswith("0:"):
        yield
        return
    uid, gid = (int(part) for part in user.split(":"))
    previous = []
    for path in paths:
        stat = path.stat()
        previous.append((path, stat.st_uid, stat.st_gid))
        os.chown(path, uid, gid)
    try:
        yield
    finally:
        for path, old_uid, old_gid in previous:
            with contextlib.suppress(OSError):
                os.chown(path, old_uid, old_gid)
