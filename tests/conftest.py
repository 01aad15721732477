"""Shared fixtures: tiny models trained on a few rows, and a real MLflow in its own virtualenv.

MLflow is a peer, never a dependency: the interop tests run it in a separate virtualenv that
the test session builds once (file-locked, so pytest-xdist workers share one build) under
``ENVKIT_TEST_CACHE`` (default ``~/.cache/envkit-tests``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

PINS = Path(__file__).resolve().parent / "pins"


def _pinned_inputs() -> tuple[str, tuple[str, ...]]:
    """MLflow's version and the flavor libraries of ``tests/pins/mlflow-venv.in``."""
    from packaging.requirements import Requirement

    mlflow, extras = "", []
    for line in (PINS / "mlflow-venv.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.name == "mlflow":
            mlflow = str(req.specifier).removeprefix("==")
        else:
            extras.append(req.name)
    return mlflow, tuple(extras)


MLFLOW_VERSION, _MLFLOW_VENV_EXTRAS = _pinned_inputs()


def test_cache_root() -> Path:
    root = Path(os.environ.get("ENVKIT_TEST_CACHE", Path.home() / ".cache" / "envkit-tests"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _installed_closure(names: tuple[str, ...]) -> dict[str, str]:
    """``names`` and what they require, transitively, as installed here: name -> version."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = str(canonicalize_name(todo.pop()))
        if name in found:
            continue
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
        for line in requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def _constraints(pinned: Path, shared: dict[str, str]) -> list[str]:
    """The compiled pins, less the distributions the MLflow venv shares with this interpreter
    (``shared``: the flavor libraries and what they require here). Those follow this
    interpreter: the libraries themselves pinned to its versions, their dependencies resolved
    by uv within what MLflow allows (python-dateutil 4 here, <3 for MLflow's graphene), so that
    no pin of ours can conflict with a release installed here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines: list[str] = []
    for raw in pinned.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and str(canonicalize_name(Requirement(line).name)) not in shared:
            lines.append(line)
    return lines


def _build_venv(
    target: Path,
    requirements: list[str],
    constraints: list[str],
    exclude_newer: str | None = None,
    newer_allowed: tuple[str, ...] = (),
) -> None:
    """Create ``target`` with ``requirements`` installed (uv) under ``constraints``;
    ``.complete`` marks success.

    Built in place (console scripts record their absolute path), so an interrupted build is
    recognised by the missing marker and rebuilt from scratch.
    """
    shutil.rmtree(target, ignore_errors=True)
    uv = [sys.executable, "-m", "uv"]
    subprocess.run(
        [*uv, "venv", "--quiet", "--python", sys.executable, str(target)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    constraints_file = target / "constraints.txt"
    constraints_file.write_text("\n".join(constraints) + "\n")
    frozen = ["--exclude-newer", exclude_newer] if exclude_newer else []
    for name in newer_allowed:  # released after the freeze date, yet needed
        frozen += ["--exclude-newer-package", f"{name}=2100-01-01T00:00:00Z"]
    proc = subprocess.run(
        [
            *uv, "pip", "install", "--quiet", "--python", str(target / "bin" / "python"),
            "--constraint", str(constraints_file), *frozen, *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=_uv_environment(),
    )  # fmt: skip
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise RuntimeError(f"building the test venv failed:\n{proc.stderr[-3000:]}")
    (target / ".complete").write_text(json.dumps(requirements))


def _uv_environment() -> dict[str, str]:
    """This environment, with pip's find-links given to uv too (as envkit's uv backend does):
    a wheel pinned with a local label (``torch==2.13.0+cpu`` from /opt/wheels) is found there
    instead of failing, and never replaced by PyPI's multi-GB CUDA build."""
    env = dict(os.environ)
    if env.get("PIP_FIND_LINKS") and not env.get("UV_FIND_LINKS"):
        env["UV_FIND_LINKS"] = ",".join(env["PIP_FIND_LINKS"].split())  # uv's separator
    return env


def shared_venv(
    name: str,
    requirements: list[str],
    constraints: list[str] = (),
    exclude_newer: str | None = None,
    newer_allowed: tuple[str, ...] = (),
) -> Path:
    """A virtualenv with ``requirements``, built once per requirements set and shared;
    ``exclude_newer`` (uv's) freezes the whole dependency graph at a date, except the
    distributions ``newer_allowed`` names."""
    from filelock import FileLock

    inputs = [sys.version, requirements, list(constraints), exclude_newer]
    blob = json.dumps([*inputs, list(newer_allowed)] if newer_allowed else inputs)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    target = test_cache_root() / f"{name}-{key}"
    with FileLock(str(target) + ".lock", timeout=1800):
        if not (target / ".complete").exists():
            _build_venv(target, requirements, list(constraints), exclude_newer, newer_allowed)
    return target / "bin" / "python"


def mlflow_venv_python() -> Path:
    """Python of the MLflow oracle's virtualenv, pinned by ``tests/pins/mlflow-venv.txt`` (and
    the same scikit-learn/pandas stack as here); built once, shared (benchmarks use it too)."""
    here = _installed_closure(_MLFLOW_VENV_EXTRAS)
    requirements = [f"mlflow=={MLFLOW_VERSION}"]
    requirements += [f"{name}=={here[name]}" for name in _MLFLOW_VENV_EXTRAS if name in here]
    return shared_venv("mlflow", requirements, _constraints(PINS / "mlflow-venv.txt", here))


def mlflow_venv_with(name: str, libraries: tuple[str, ...]) -> Path:
    """Python of a virtualenv of its own with MLflow and ``libraries`` (at this interpreter's
    versions, their dependencies within the oracle's pins): for a flavor whose library the
    shared oracle venv does not carry (h2o: ~270 MB installed that only its tests need)."""
    here = _installed_closure(libraries)
    requirements = [f"mlflow=={MLFLOW_VERSION}", *(f"{n}=={here[n]}" for n in libraries)]
    return shared_venv(name, requirements, _constraints(PINS / "mlflow-venv.txt", here))


# An MLflow 2.x, frozen with its whole dependency graph at a date of its time (uv
# --exclude-newer), so that the models it writes are those of an MLflow 2.12 user of May 2024.
MLFLOW2_REQUIREMENTS = [
    "mlflow==2.12.2", "scikit-learn==1.4.2", "pandas==2.2.2", "numpy==1.26.4", "setuptools",
]  # fmt: skip
MLFLOW2_FROZEN_AT = "2024-05-20T00:00:00Z"


# Test dependencies PyPI has only as sdists, hundreds of MB each (h2o bundles H2O's jar).
SDIST_ONLY = ("h2o", "pyspark")


@pytest.fixture(scope="session", autouse=True)
def _sdist_wheels() -> Path:
    """The wheels of :data:`SDIST_ONLY` at their installed versions, offered to uv
    (``UV_FIND_LINKS``) and pip (``PIP_FIND_LINKS``) for every environment the tests build.

    On this workplace's machines PyPI's files come through a proxy that sends no cache headers,
    so uv cannot revalidate what it cached: every environment with h2o downloaded its 266 MB
    sdist again, built it again (about 20 s) and kept another 530 MB in uv's cache (38 GB of
    it over one day, until the disk filled). pip built these wheels when the README's install
    command installed the test extra, and ``pip wheel`` takes them from its wheel cache.
    What the environments install is unchanged: the same release, built from the same sdist.
    """
    from importlib.metadata import PackageNotFoundError, version

    from filelock import FileLock

    pins = []
    for name in SDIST_ONLY:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    key = hashlib.sha256(str(pins).encode()).hexdigest()[:12]
    target = test_cache_root() / f"sdist-wheels-{key}"
    with FileLock(str(target) + ".lock", timeout=1800):
        if pins and not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(target),
                 *pins],
                check=True, capture_output=True, timeout=1800,
            )  # fmt: skip
            (target / ".complete").write_text("\n".join(pins))
    links = [str(target), *os.environ.get("PIP_FIND_LINKS", "").split()]
    uv_links = [str(target), *os.environ.get("UV_FIND_LINKS", "").replace(",", " ").split()]
    if not os.environ.get("UV_FIND_LINKS"):
        uv_links += links[1:]  # (envkit gives uv pip's find-links when uv has none)
    os.environ["PIP_FIND_LINKS"] = " ".join(dict.fromkeys(links))
    os.environ["UV_FIND_LINKS"] = ",".join(dict.fromkeys(uv_links))
    return target


@pytest.fixture(scope="session")
def mlflow2_python() -> Path:
    """Python of a virtualenv with MLflow 2.12.2 as of May 2024 (:data:`MLFLOW2_REQUIREMENTS`)."""
    if not (3, 9) <= sys.version_info < (3, 13):
        pytest.skip(f"MLflow 2.12's pins have no wheels for Python {sys.version.split()[0]}")
    return shared_venv("mlflow2", MLFLOW2_REQUIREMENTS, exclude_newer=MLFLOW2_FROZEN_AT)


@pytest.fixture(scope="session")
def diviner_python(repo_root: Path) -> Path:
    """Python of a virtualenv of MLflow 2.12.2's time (:data:`MLFLOW2_REQUIREMENTS`, May 2024)
    with diviner 0.1.1, which fails with pandas 3, and envkit from this checkout (editable, with
    its scoring server; picklescan, which envkit needs newer, is let past the date)."""
    if not (3, 9) <= sys.version_info < (3, 13):
        pytest.skip(f"MLflow 2.12's pins have no wheels for Python {sys.version.split()[0]}")
    requirements = [*MLFLOW2_REQUIREMENTS, "diviner==0.1.1", "-e", f"{repo_root}[serve]"]
    return shared_venv(
        "diviner", requirements, exclude_newer=MLFLOW2_FROZEN_AT, newer_allowed=("picklescan",)
    )


@pytest.fixture(scope="session")
def mlflow_python() -> Path:
    """Python of a separate virtualenv with real MLflow (:func:`mlflow_venv_python`)."""
    if sys.version_info < (3, 10):
        pytest.skip(
            f"MLflow {MLFLOW_VERSION} needs Python >= 3.10 (this is {sys.version.split()[0]})"
        )
    return mlflow_venv_python()


@pytest.fixture(scope="session")
def local_index(tmp_path_factory: pytest.TempPathFactory):
    """A ``--find-links`` directory of the ektest wheels (``tests/local_wheels.py``): tiny
    distributions whose dependency graph the tests control, built once per worker."""
    from local_wheels import build_index

    return build_index(tmp_path_factory.mktemp("ektest-wheels"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def run_in_mlflow(mlflow_python: Path, repo_root: Path) -> Callable[..., str]:
    """``run(script, *args, with_envkit=False, cwd=None)``: run a Python script (dedented)
    under the MLflow virtualenv's interpreter, assert that it succeeds and return its stdout.

    envkit is importable there only with ``with_envkit=True`` (from this checkout).
    """

    def run(script: str, *args: str, with_envkit: bool = False, cwd: Path | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if with_envkit:
            env["PYTHONPATH"] = str(repo_root)
        out = subprocess.run(
            [str(mlflow_python), "-c", textwrap.dedent(script), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    return run


@pytest.fixture(scope="session")
def mlflow_models(run_in_mlflow, tmp_path_factory) -> Path:
    """Models written by real MLflow: the iris pipeline with an input example (skops, MLflow's
    default) and without one (pickle), and a PythonModel; ``expected.json`` holds the
    pipeline's predictions on the first ten rows."""
    root = tmp_path_factory.mktemp("mlflow-models")
    run_in_mlflow(
        """
        import json, sys
        import mlflow.pyfunc, mlflow.sklearn
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        out = sys.argv[1]
        X, y = load_iris(return_X_y=True, as_frame=True)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)
        mlflow.sklearn.save_model(clf, f"{out}/sk_skops", input_example=X.head(3))
        mlflow.sklearn.save_model(clf, f"{out}/sk_pickle", serialization_format="pickle")

        class Doubler(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return [2 * x for x in model_input]

        mlflow.pyfunc.save_model(f"{out}/py_model", python_model=Doubler())
        expected = {"sk": clf.predict(X.head(10)).tolist()}
        open(f"{out}/expected.json", "w").write(json.dumps(expected))
        """,
        str(root),
    )
    return root


@pytest.fixture(scope="session")
def iris():
    """(X, y) of the iris data set as a DataFrame and a Series."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def iris_pipeline(iris):
    """A StandardScaler + LogisticRegression pipeline fitted on iris."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)


@pytest.fixture(autouse=True)
def _restore_cli_output_config():
    """envkit.cli.main() configures the "envkit" logger and warnings for a terminal; a test
    that calls it in-process must not change what later tests (caplog) see."""
    import logging
    import warnings

    logger = logging.getLogger("envkit")
    saved = (logger.handlers[:], logger.level, logger.propagate, warnings.showwarning)
    yield
    logger.handlers[:], logger.level, logger.propagate, warnings.showwarning = saved


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the test session (a JVM takes seconds to start)."""
    from spark_helpers import spark_session_builder

    session = spark_session_builder("local[2]").getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mlflow_h2o_python() -> Path:
    """Python of a virtualenv with MLflow and this interpreter's h2o (:func:`mlflow_venv_with`)."""
    if sys.version_info < (3, 10):
        pytest.skip(f"MLflow {MLFLOW_VERSION} needs Python >= 3.10")
    return mlflow_venv_with("mlflow-h2o", ("h2o", "pandas", "numpy"))


# The Hugging Face flavors (envkit.transformers, envkit.sentence_transformers): MLflow beside
# this interpreter's torch (2.13.0+cpu, from PIP_FIND_LINKS), transformers and
# sentence-transformers, in a virtualenv of their own (~1 GB that only these tests need).
HF_LIBRARIES = ("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors")


@pytest.fixture(scope="session")
def mlflow_hf_python() -> Path:
    """Python of a virtualenv with MLflow and this interpreter's Hugging Face stack
    (:data:`HF_LIBRARIES`, :func:`mlflow_venv_with`)."""
    if sys.version_info < (3, 10):
        pytest.skip(f"MLflow {MLFLOW_VERSION} needs Python >= 3.10")
    return mlflow_venv_with("mlflow-hf", HF_LIBRARIES)


@pytest.fixture(scope="session")
def h2o_cluster():
    """One small local H2O cluster per test process (its JVM takes ~10 s to start), on a free
    loopback port, shut down at the end. Yields the ``h2o.init`` arguments, which the test
    models record: their loads (capture, MLflow, a server without a network namespace) join
    this cluster instead of starting one more JVM."""
    import socket

    import h2o

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    init = {"ip": "127.0.0.1", "port": port, "max_mem_size": "512M", "nthreads": 1}
    h2o.init(**init, verbose=False)
    h2o.no_progress()
    yield init
    h2o.cluster().shutdown()


@pytest.fixture(scope="session")
def venv_factory() -> Callable[..., Path]:
    """:func:`shared_venv`: ``(name, requirements)`` -> the Python of a shared virtualenv."""
    return shared_venv


@pytest.fixture(scope="session")
def mlflow_spacy_python() -> Path:
    """Python of a virtualenv with MLflow and this spaCy (:func:`mlflow_venv_with`)."""
    pytest.importorskip("spacy")
    if sys.version_info < (3, 10):
        pytest.skip(f"MLflow {MLFLOW_VERSION} needs Python >= 3.10")
    from flavor_models.spacy import MLFLOW_LIBRARIES

    return mlflow_venv_with("mlflow-spacy", MLFLOW_LIBRARIES)


@pytest.fixture(scope="session")
def mlflow_tf_python() -> Path:
    """Python of a virtualenv with MLflow and this TensorFlow and Keras (:func:`mlflow_venv_with`:
    tensorflow-cpu, whose wheels uv keeps in its cache after the first environment)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    if sys.version_info < (3, 10):
        pytest.skip(f"MLflow {MLFLOW_VERSION} needs Python >= 3.10")
    from flavor_models.keras import MLFLOW_LIBRARIES

    return mlflow_venv_with("mlflow-tf", MLFLOW_LIBRARIES)


@pytest.fixture(scope="session")
def mlflow_torch_python(_sdist_wheels) -> Path:
    """Python of a virtualenv with MLflow and this interpreter's torch (:func:`mlflow_venv_with`):
    ``torch==2.13.0+cpu``, the CPU build uv finds in the find-links (``/opt/wheels``). Skipped
    with a CUDA build of torch here: its copy would be several GB."""
    torch = pytest.importorskip("torch")
    if sys.version_info < (3, 10):
        pytest.skip(f"MLflow {MLFLOW_VERSION} needs Python >= 3.10")
    if torch.version.cuda is not None:
        pytest.skip(f"torch {torch.__version__} is a CUDA build: no multi-GB copy for MLflow")
    return mlflow_venv_with("mlflow-torch", ("torch", "pandas", "numpy", "cloudpickle"))
