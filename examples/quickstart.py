"""Quick start: train a tiny iris classifier, save it with envkit, load it, then validate it.

    python examples/quickstart.py [MODEL_DIR]

MODEL_DIR defaults to examples/out/iris_model (replaced if it exists). The last step rebuilds
the model's recorded environment in a sandbox (uv, cached under ~/.cache/envkit) and runs the
input example there, exactly what `envkit validate MODEL_DIR` does. Exits with its exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import envkit
import envkit.pyfunc
import envkit.sklearn
from envkit.sandbox.report import render_text


def main() -> int:
    target = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out" / "iris_model"
    )

    # 1. Train a tiny model.
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)

    # 2. Save it: MLmodel, the pickled pipeline, the input example, the signature and the
    #    captured environment (requirements.txt, python_env.yaml, conda.yaml).
    envkit.sklearn.save_model(clf, target, input_example=X.head(3), overwrite=True)
    print(f"saved {target}")
    print("requirements:", (target / "requirements.txt").read_text().split())

    # 3. Load it back as a generic pyfunc model and predict.
    model = envkit.pyfunc.load_model(target)
    predictions = model.predict(X.head(3))
    print("predictions on the input example:", predictions.tolist())

    # 4. Prove it runs in a freshly rebuilt environment (same as `envkit validate MODEL_DIR`).
    report = envkit.validate(target)
    print(render_text(report))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
