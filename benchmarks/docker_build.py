"""Serving image for the iris model: size and build time, cold and with the requirements
layer cached (a model-only change).

    python benchmarks/docker_build.py [--base-image envkit-base:bookworm]

Needs a Docker engine and the base image (docker/build-base-image.sh builds one without a
registry). The cold build uses --no-cache, so pip downloads everything from the index; the
second build saves a retrained model with the same requirements. Both images are removed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from importlib.metadata import version
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--base-image", default=os.environ.get("ENVKIT_DOCKER_BASE_IMAGE", "envkit-base:bookworm")
    )
    args = parser.parse_args()

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import envkit.sklearn
    from envkit.docker import build_image, remove_image, require_engine

    require_engine()
    X, y = load_iris(return_X_y=True, as_frame=True)
    requirements = [
        f"scikit-learn=={version('scikit-learn')}",
        f"pandas=={version('pandas')}",
        f"numpy=={version('numpy')}",
        f"cloudpickle=={version('cloudpickle')}",
    ]
    run = uuid.uuid4().hex[:8]
    tags = [f"envkit-bench-iris:{run}-cold", f"envkit-bench-iris:{run}-model-only"]
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="envkit-bench-") as tmp:
            for i, (tag, c) in enumerate(zip(tags, (1.0, 0.3))):
                model = Path(tmp) / f"iris-{i}"
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300))
                envkit.sklearn.save_model(
                    clf.fit(X, y), model, input_example=X.head(3), pip_requirements=requirements
                )
                build = build_image(model, tag, base_image=args.base_image, no_cache=(i == 0))
                rows.append(("model-only change" if i else "cold (--no-cache)", build))
    finally:
        for tag in tags:
            remove_image(tag)
    print(f"iris serving image, base {args.base_image}")
    print(f"{'build':<22}{'seconds':>9}{'cached steps':>14}{'size MB':>9}")
    for label, build in rows:
        cached = f"{build.cached_steps}/{build.steps}"
        print(f"{label:<22}{build.duration:>9.1f}{cached:>14}{build.size_bytes / 1e6:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
