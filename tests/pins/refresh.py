"""Refresh the pins of what the test session installs into its own virtualenvs.

    python tests/pins/refresh.py

compiles ``tests/pins/mlflow-venv.in`` (the MLflow oracle's virtualenv) into
``tests/pins/mlflow-venv.txt`` with ``uv pip compile --universal``, for every Python the suite
runs MLflow on (3.10-3.13). The test session installs that file as a constraints file, with
this interpreter's own version of every distribution installed here (so that pickles move
between the two sides). To move to another MLflow, change its pin in ``mlflow-venv.in`` and
the samples in ``tests/data``, run this, review the diff, run the suite, and commit both with
the reason. The uv that envkit's tests use is pinned in ``pyproject.toml`` (the ``test``
extra); change it there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    source, target = HERE / "mlflow-venv.in", HERE / "mlflow-venv.txt"
    subprocess.run(
        [
            sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--universal",
            "--python-version", "3.10", "--no-annotate", "--custom-compile-command",
            "python tests/pins/refresh.py", str(source), "-o", str(target),
        ],
        check=True,
        timeout=600,
    )  # fmt: skip
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
