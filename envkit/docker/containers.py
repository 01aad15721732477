"""Containers: a command run to its end in a new container, and the locked-down run a model
gets (no network, read-only root with a ``/tmp`` tmpfs, a non-root user, every capability
dropped, no new privileges, memory/CPU/PID limits).

Each container is labelled with the envkit process that runs it, so that the containers of an
envkit that was killed (SIGKILL runs no cleanup) are recognised and removed by the next run
(:func:`reap_orphaned_containers`). The limits are ``ENVKIT_DOCKER_MEMORY`` (default ``2g``)
and ``ENVKIT_DOCKER_CPUS`` (default ``1``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from envkit._subprocess import Outcome
from envkit.docker.engine import engine
from envkit.errors import UsageError
from envkit.sandbox.tempdirs import CONTAINER_UID

logger = logging.getLogger(__name__)

__all__ = [
    "LABEL_OWNER",
    "container_limits",
    "owner_labels",
    "reap_orphaned_containers",
    "run_contained",
    "run_container",
]

# On containers: the envkit process that runs it (pid and boot), so that containers a killed
# envkit left behind are recognised and removed (reap_orphaned_containers).
LABEL_OWNER = "org.envkit.owner"

ENV_MEMORY = "ENVKIT_DOCKER_MEMORY"
ENV_CPUS = "ENVKIT_DOCKER_CPUS"
DEFAULT_MEMORY = "2g"
DEFAULT_CPUS = "1"
PIDS_LIMIT = 512


# --- who runs a container ------------------------------------------------------------------------


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


# --- running -------------------------------------------------------------------------------------


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


def run_contained(
    image: str,
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    timeout: float | None = None,
    environment: Mapping[str, str] | None = None,
    paths: Sequence[Path] = (),
    writable_paths: Sequence[Path] = (),
) -> Outcome:
    """Run ``command`` in a locked-down container of ``image`` (see the module's docstring).
    The paths it needs are bind-mounted at the same place: ``paths`` (and ``cwd``, unless it
    is inside one of them) read-only, ``writable_paths`` read-write."""
    writable = list(dict.fromkeys(Path(p).absolute() for p in writable_paths))
    mounts = {path: "rw" for path in writable}
    for path in paths:
        mounts.setdefault(Path(path).absolute(), "ro")
    workdir = Path(cwd).absolute() if cwd is not None else None
    if workdir is not None and not any(_within(workdir, mount) for mount in mounts):
        mounts[workdir] = "ro"
    user = container_user()
    with _owned_by_container(writable, user):
        return run_container(
            image,
            command,
            timeout=timeout,
            name=f"envkit-run-{uuid.uuid4().hex[:12]}",
            # Values go to the engine in the API request, never on a command line.
            environment={
                "PYTHONNOUSERSITE": "1",
                "PYTHONIOENCODING": "utf-8",
                "HOME": "/tmp",
                **(environment or {}),
            },
            volumes={str(p): {"bind": str(p), "mode": mode} for p, mode in mounts.items()},
            working_dir=str(workdir) if workdir is not None else None,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=512m"},
            user=user,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            **container_limits(),
        )


# --- limits --------------------------------------------------------------------------------------


def memory_limit() -> str:
    """The containers' memory limit, ``ENVKIT_DOCKER_MEMORY``: a size the engine takes (``512m``,
    ``2g``, bytes)."""
    limit = os.environ.get(ENV_MEMORY) or DEFAULT_MEMORY
    if not re.fullmatch(r"\d+(\.\d+)?[bkmgBKMG]?", limit.strip()):
        raise UsageError(f"{ENV_MEMORY}={limit!r} is not a memory size (e.g. 512m, 2g)")
    return limit.strip()


def _nano_cpus() -> int:
    cpus = os.environ.get(ENV_CPUS) or DEFAULT_CPUS
    try:
        value = float(cpus)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise UsageError(f"{ENV_CPUS}={cpus!r} is not a positive number of CPUs")
    return int(value * 1e9)


def container_limits() -> dict[str, Any]:
    """The resource limits of a model's container, as ``containers.create`` options; a
    :class:`UsageError` (exit 2) when ``ENVKIT_DOCKER_MEMORY`` or ``ENVKIT_DOCKER_CPUS`` is
    not a limit."""
    return {"mem_limit": memory_limit(), "nano_cpus": _nano_cpus(), "pids_limit": PIDS_LIMIT}


def _within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def container_user() -> str:
    """This user when it is not root; else the image's non-root user."""
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
