"""The ``sklearn`` flavor, file-compatible with ``mlflow.sklearn``.

    import envkit.sklearn

    envkit.sklearn.save_model(pipeline, "iris_model", input_example=X.head(3))
    estimator = envkit.sklearn.load_model("iris_model")      # the scikit-learn object
    pyfunc = envkit.pyfunc.load_model("iris_model")          # the generic interface

The flavor section uses MLflow's keys (``pickled_model``, ``serialization_format``,
``sklearn_version``, ``code``, ``skops_trusted_types``) so ``mlflow.sklearn.load_model`` reads
envkit models, and envkit reads models MLflow wrote.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "sklearn"
LOADER_MODULE = "envkit.sklearn"

SERIALIZATION_FORMAT_PICKLE = "pickle"
SERIALIZATION_FORMAT_CLOUDPICKLE = "cloudpickle"
SERIALIZATION_FORMAT_SKOPS = "skops"
SUPPORTED_SERIALIZATION_FORMATS = (
    SERIALIZATION_FORMAT_PICKLE,
    SERIALIZATION_FORMAT_CLOUDPICKLE,
    SERIALIZATION_FORMAT_SKOPS,
)
SUPPORTED_PREDICT_FNS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "predict_joint_log_proba",
    "decision_function",
    "transform",
    "score",
)

__all__ = [
    "FLAVOR_NAME",
    "SERIALIZATION_FORMAT_CLOUDPICKLE",
    "SERIALIZATION_FORMAT_PICKLE",
    "SERIALIZATION_FORMAT_SKOPS",
    "SUPPORTED_SERIALIZATION_FORMATS",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _model_file_name(serialization_format: str) -> str:
    return "model.skops" if serialization_format == SERIALIZATION_FORMAT_SKOPS else "model.pkl"


def _dump(
    sk_model: Any, target: Path, serialization_format: str, trusted: list[str] | None
) -> None:
    from envkit.errors import UsageError

    if serialization_format == SERIALIZATION_FORMAT_SKOPS:
        import skops.io

        skops.io.dump(sk_model, target)
        untrusted = [
            t for t in skops.io.get_untrusted_types(file=target) if t not in (trusted or [])
        ]
        if untrusted:
            raise UsageError(
                "the model references types skops does not trust: "
                + ", ".join(untrusted)
                + "; if they are safe, pass skops_trusted_types=[...] with them, or use "
                "serialization_format='cloudpickle'"
            )
        return
    if serialization_format == SERIALIZATION_FORMAT_CLOUDPICKLE:
        import cloudpickle as pickler
    else:
        pickler = pickle
    with open(target, "wb") as handle:
        try:
            pickler.dump(sk_model, handle, protocol=pickle.DEFAULT_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise UsageError(
                f"pickling the {type(sk_model).__name__} model failed ({exc}); try "
                "serialization_format='cloudpickle'"
            ) from exc


def _load_file(path: Path, serialization_format: str, trusted: list[str] | None) -> Any:
    from envkit.errors import ModelFormatError

    if serialization_format not in SUPPORTED_SERIALIZATION_FORMATS:
        raise ModelFormatError(
            f"unknown sklearn serialization_format {serialization_format!r}; expected one of "
            + ", ".join(SUPPORTED_SERIALIZATION_FORMATS)
        )
    from envkit.models.serialization import load_model_file

    if serialization_format == SERIALIZATION_FORMAT_SKOPS:
        import skops.io

        def load_skops(handle: Any) -> Any:
            from skops.io.exceptions import UntrustedTypesFoundException

            try:
                return skops.io.load(handle.name, trusted=trusted)
            except UntrustedTypesFoundException as exc:
                raise ModelFormatError(
                    f"{path.name} holds types skops does not trust ({exc}); if you trust this "
                    "model, list them in the sklearn flavor's skops_trusted_types"
                ) from exc

        return load_model_file(path, load_skops)
    if serialization_format == SERIALIZATION_FORMAT_CLOUDPICKLE:
        import cloudpickle

        return load_model_file(path, cloudpickle.load)
    return load_model_file(path, pickle.load)


def save_model(
    sk_model: Any,
    path: str | os.PathLike[str],
    *,
    serialization_format: str = SERIALIZATION_FORMAT_CLOUDPICKLE,
    skops_trusted_types: list[str] | None = None,
    pyfunc_predict_fn: str = "predict",
    row_independent: bool | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: RequirementsArg = None,
    extra_pip_requirements: RequirementsArg = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    conda_env: dict[str, Any] | str | os.PathLike[str] | None = None,
    envkit_model: Any = None,
) -> Any:
    """Save a scikit-learn estimator as an MLflow Model directory at ``path``.

    ``serialization_format`` is ``"cloudpickle"`` (default), ``"pickle"`` or ``"skops"``
    (no pickle; ``skops_trusted_types`` lists extra types to trust). ``pyfunc_predict_fn``
    chooses the estimator method the pyfunc ``predict`` calls (``predict_proba`` ...).
    ``row_independent`` (python_function key, see ``envkit.pyfunc.save_model``) defaults to
    true for the row-wise methods (``predict``, ``predict_proba``, ... not ``score``): pass
    False for an estimator whose predictions depend on the other rows of the call.
    """
    import sklearn

    from envkit._version import __version__
    from envkit.deps.envfiles import pin_installed
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if serialization_format not in SUPPORTED_SERIALIZATION_FORMATS:
        raise UsageError(
            f"serialization_format must be one of {', '.join(SUPPORTED_SERIALIZATION_FORMATS)}, "
            f"not {serialization_format!r}"
        )
    if pyfunc_predict_fn not in SUPPORTED_PREDICT_FNS:
        raise UsageError(
            f"pyfunc_predict_fn must be one of {', '.join(SUPPORTED_PREDICT_FNS)}, "
            f"not {pyfunc_predict_fn!r}"
        )
    if not callable(getattr(sk_model, pyfunc_predict_fn, None)):
        raise UsageError(f"the {type(sk_model).__name__} model has no {pyfunc_predict_fn}() method")
    file_name = _model_file_name(serialization_format)

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        _dump(sk_model, staging / file_name, serialization_format, skops_trusted_types)
        pyfunc_conf: dict[str, Any] = {
            "loader_module": LOADER_MODULE,
            "model_path": file_name,
            "predict_fn": pyfunc_predict_fn,
        }
        if row_independent is None:
            from envkit.pyfunc.loading import SKLEARN_ROW_WISE_FNS

            pyfunc_conf["row_independent"] = pyfunc_predict_fn in SKLEARN_ROW_WISE_FNS
        else:
            pyfunc_conf["row_independent"] = bool(row_independent)
        if code_dir:
            pyfunc_conf["code"] = code_dir
        model.add_flavor("python_function", **pyfunc_conf)
        model.add_flavor(
            FLAVOR_NAME,
            pickled_model=file_name,
            sklearn_version=sklearn.__version__,
            serialization_format=serialization_format,
            code=code_dir,
            skops_trusted_types=skops_trusted_types,
        )

    def default_requirements() -> list[str]:
        reqs = [f"envkit=={__version__}", pin_installed("scikit-learn")]
        if serialization_format == SERIALIZATION_FORMAT_CLOUDPICKLE:
            reqs.append(pin_installed("cloudpickle"))
        elif serialization_format == SERIALIZATION_FORMAT_SKOPS:
            reqs.append(pin_installed("skops"))
        return reqs

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=default_requirements,
            pyfunc_impl=lambda staging: _SklearnModelWrapper(sk_model),
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


def log_model(
    sk_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``sk_model`` into the active run (see :func:`envkit.start_run`); returns ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, sk_model=sk_model, **kwargs)


def load_model(
    model_uri: str | os.PathLike[str],
    *,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> Any:
    """Load the scikit-learn estimator of the model at ``model_uri``.

    The model's pickles are scanned first: one that calls a dangerous global (``os.system``...)
    raises :class:`~envkit.errors.UnsafeModelError` unless ``trust_model=True`` or the global is
    in ``trusted_types`` (``None``: ``$ENVKIT_TRUST_MODEL`` / ``$ENVKIT_TRUSTED_TYPES``).
    """
    from envkit.pyfunc.flavor_kit import open_flavor

    opened = open_flavor(
        model_uri, FLAVOR_NAME, trust_model=trust_model, trusted_types=trusted_types
    )
    return _load_file(
        opened.file("pickled_model"),
        str(opened.conf.get("serialization_format", SERIALIZATION_FORMAT_PICKLE)),
        opened.conf.get("skops_trusted_types"),
    )


class _SklearnModelWrapper:
    """pyfunc adapter: ``predict(data, params=None)`` plus the estimator's other predict fns."""

    def __init__(self, sklearn_model: Any) -> None:
        self.sklearn_model = sklearn_model
        for fn in SUPPORTED_PREDICT_FNS[1:]:
            method = getattr(sklearn_model, fn, None)
            if method is not None:
                setattr(self, fn, method)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.sklearn_model.predict(data)

    def get_raw_model(self) -> Any:
        return self.sklearn_model

    def positional_predictor(
        self, predict_fn: str, columns: Sequence[str]
    ) -> Callable[[Any], Any] | None:
        """``predict_fn`` on a 2-D array of ``columns`` (in order), answering what it answers
        for their DataFrame, when the estimator reads columns by position; else None."""
        from envkit.sklearn._positional import positional_predictor

        return positional_predictor(self.sklearn_model, predict_fn, columns)


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _SklearnModelWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.sklearn``)."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    target = Path(path)
    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    conf = opened.conf
    if not target.is_file():
        pyfunc_conf = opened.pyfunc_conf()
        target = opened.file_named(pyfunc_conf.get("model_path") or conf.get("pickled_model"))
    return _SklearnModelWrapper(
        _load_file(
            target,
            str(conf.get("serialization_format", SERIALIZATION_FORMAT_PICKLE)),
            conf.get("skops_trusted_types"),
        )
    )
