"""Docker images and containers for a model: the build context (``context``: Dockerfile,
requirements, model, configuration), the engine (``engine``: a client through the ``docker``
SDK, the ``envkit[docker]`` extra, imported only when used), images (``image``: build, query,
the serving image of ``envkit build-docker``), containers (``containers``: runs to their end,
the locked-down run of a model, reaping the containers of killed envkit processes) and the
``docker`` sandbox backend (``backend``, registered as ``envkit.backends`` entry point).

This layer sits above :mod:`envkit.sandbox` (it imports the sandbox, never the reverse).
"""

from __future__ import annotations

from envkit.docker.containers import (
    LABEL_OWNER,
    container_limits,
    owner_labels,
    reap_orphaned_containers,
    run_contained,
    run_container,
)
from envkit.docker.context import (
    CONTAINER_MODEL_DIR,
    CONTAINER_PYTHON,
    CONTAINER_UID,
    BuildContext,
    check_image_reference,
    default_base_image,
    generate_dockerfile,
    model_install_plan,
    resolve_ca_bundle,
    write_context,
)
from envkit.docker.engine import (
    engine,
    engine_unavailable_reason,
    engine_version,
    require_engine,
)
from envkit.docker.image import (
    ImageBuild,
    build_image,
    docker_build,
    find_images,
    image_inspect,
    image_python,
    remove_image,
    tag_image,
)

__all__ = [
    "CONTAINER_MODEL_DIR",
    "CONTAINER_PYTHON",
    "CONTAINER_UID",
    "LABEL_OWNER",
    "BuildContext",
    "ImageBuild",
    "build_image",
    "check_image_reference",
    "container_limits",
    "default_base_image",
    "docker_build",
    "engine",
    "engine_unavailable_reason",
    "engine_version",
    "find_images",
    "generate_dockerfile",
    "image_inspect",
    "image_python",
    "model_install_plan",
    "owner_labels",
    "reap_orphaned_containers",
    "remove_image",
    "require_engine",
    "resolve_ca_bundle",
    "run_contained",
    "run_container",
    "tag_image",
    "write_context",
]
