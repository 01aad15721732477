"""The ``ektest_poly`` flavor: a third-party envkit flavor (README "Writing a flavor").

Its model is a :class:`Polynomial` (coefficients, highest power first), saved as JSON; the
pyfunc evaluates it with numpy at each input value.

    import ektest_flavor

    ektest_flavor.save_model(ektest_flavor.Polynomial([2, 0, 1]), "poly", input_example=x)
    ektest_flavor.load_model("poly")                   # the Polynomial
    envkit.pyfunc.load_model("poly").predict(x)        # 2 x**2 + 1
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

FLAVOR_NAME = "ektest_poly"
LOADER_MODULE = "ektest_flavor"  # what python_function.loader_module names: this module
MODEL_FILE = "polynomial.json"


def _numpy() -> Any:
    # The library, imported when used (``import ektest_flavor`` stays light); a missing one is
    # a LoaderImportError naming the package to install: exit 1 at ``envkit validate``.
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("numpy", flavor=FLAVOR_NAME)


class Polynomial:
    """c[0] x**n + ... + c[n]."""

    def __init__(self, coefficients: Sequence[float]) -> None:
        self.coefficients = [float(c) for c in coefficients]

    def __call__(self, x: Any) -> Any:
        numpy = _numpy()
        return numpy.polyval(self.coefficients, numpy.asarray(x, dtype=float))


def save_model(
    polynomial: Polynomial,
    path: str | os.PathLike[str],
    *,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    conda_env: Any = None,
    envkit_model: Any = None,
) -> Any:
    """Save ``polynomial`` as an MLflow Model directory at ``path``."""
    import envkit
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    def write(staging: Path, model: Any, code_dir: str | None) -> None:
        # 1. the model's own files, in the staging directory
        (staging / MODEL_FILE).write_text(json.dumps({"coefficients": polynomial.coefficients}))
        # 2. the python_function section (its loader_module is this module) and our own
        pyfunc_conf = {"loader_module": LOADER_MODULE, "data": MODEL_FILE}
        if code_dir:
            pyfunc_conf["code"] = code_dir
        model.add_flavor("python_function", **pyfunc_conf)
        model.add_flavor(
            FLAVOR_NAME,
            data=MODEL_FILE,
            degree=len(polynomial.coefficients) - 1,
            ektest_flavor_version=version("ektest-flavor"),
            code=code_dir,
        )

    def default_requirements() -> list[str]:
        # What loading needs when the capture cannot say (it records what the model imports)
        return [
            f"envkit=={envkit.__version__}",
            f"ektest-flavor=={version('ektest-flavor')}",
            f"numpy=={version('numpy')}",
        ]

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=default_requirements,
            pyfunc_impl=lambda staging: _PolynomialPyfunc(polynomial),
        ),
        envkit_model=envkit_model,
        code_paths=code_paths,
        input_example=input_example,
        signature=signature,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        overwrite=overwrite,
        strict=strict,
        conda_env=conda_env,
    )


def log_model(polynomial: Polynomial, artifact_path: str | None = None, *, name: str | None = None, **kwargs: Any) -> Any:
    """Save ``polynomial`` into the active run; returns its ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, polynomial=polynomial, **kwargs)


def _read(model_file: Path) -> Polynomial:
    return Polynomial(json.loads(model_file.read_text())["coefficients"])


def load_model(model_uri: str | os.PathLike[str]) -> Polynomial:
    """The :class:`Polynomial` of the model at ``model_uri``."""
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(model_uri, FLAVOR_NAME)  # URI resolved, paths kept inside, scanned
    return _read(opened.file("data"))


class _PolynomialPyfunc:
    """What ``envkit.pyfunc.load_model`` wraps: ``predict(data, params=None)``."""

    def __init__(self, polynomial: Polynomial) -> None:
        self.polynomial = polynomial

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.polynomial(data)

    def get_raw_model(self) -> Polynomial:
        return self.polynomial


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _PolynomialPyfunc:
    """The loader contract: ``path`` is the python_function ``data`` file (or the model)."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    target = Path(path) if Path(path).is_file() else opened.file("data")
    return _PolynomialPyfunc(_read(target))
