"""``envkit matrix`` on the iris pipeline: 3 Pythons x 2 scikit-learn releases, concurrently
(``--jobs 2``, this machine's cores) against one cell at a time (``--jobs 1``).

Each run starts from an empty environment cache (uv's package cache is shared and warm after
the first, as it would be on a CI runner with a cache). Prints figures, never asserts.

    python benchmarks/matrix.py [--pythons 3.10 3.11 3.12] [--other-sklearn 1.6.1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pythons", nargs="+", default=["3.10", "3.11", "3.12"])
    parser.add_argument("--other-sklearn", default="1.6.1")
    args = parser.parse_args()

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import envkit
    import envkit.sklearn
    from envkit.sandbox.matrix import render_text

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
    sets = [[f"scikit-learn=={version('scikit-learn')}"], [f"scikit-learn=={args.other_sklearn}"]]
    with tempfile.TemporaryDirectory(prefix="envkit-bench-matrix-") as tmp:
        path = Path(tmp) / "iris"
        envkit.sklearn.save_model(model, path, input_example=X.head(3))
        walls = {}
        for jobs in (1, 2, 1, 2):  # (the first run also warms uv's package cache)
            home = Path(tmp) / f"home-{jobs}"
            started = time.perf_counter()
            report = envkit.matrix(
                path, pythons=args.pythons, override_sets=sets, jobs=jobs, cache_dir=home
            )
            walls.setdefault(jobs, []).append(time.perf_counter() - started)
            shutil.rmtree(home, ignore_errors=True)
        print(render_text(report))
        one, two = walls[1][-1], walls[2][-1]
        cells = sum(r.build_seconds + r.run_seconds for r in report.results)
        print(f"cells: {len(report.results)}; sum of the cells' build+run times: {cells:.1f}s")
        print(f"wall, one cell at a time (--jobs 1): {one:.1f}s")
        print(f"wall, --jobs 2:                      {two:.1f}s  ({one / two:.2f}x faster)")


if __name__ == "__main__":
    main()
