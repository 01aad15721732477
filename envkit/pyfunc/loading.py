"""Load any ``python_function`` model: :func:`load_model` and :class:`PyFuncModel`."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from envkit._fs import check_tree_inside, resolve_inside
from envkit.errors import (
    EnvkitError,
    ModelFailedError,
    ModelFormatError,
    UnknownFlavorError,
    UsageError,
)
from envkit.models.model import MLMODEL_FILE_NAME, Model

FLAVOR_NAME = "python_function"
# python_function key: true when each row's prediction depends on that row only, so the
# scoring server may merge concurrent requests into one predict call (micro-batching).
ROW_INDEPENDENT = "row_independent"
# Without the key: the sklearn flavor's methods that answer row by row.
_SKLEARN_LOADERS = ("envkit.sklearn", "mlflow.sklearn")
SKLEARN_ROW_WISE_FNS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "predict_joint_log_proba",
    "decision_function",
    "transform",
)


class PyFuncModel:
    """A loaded model with a uniform ``predict(data, params=None)`` interface."""

    def __init__(
        self,
        model_meta: Model,
        model_impl: Any,
        *,
        predict_fn: str = "predict",
        predict_stream_fn: str | None = None,
        model_config: dict[str, Any] | None = None,
        local_path: str | None = None,
    ) -> None:
        if not predict_fn.isidentifier() or predict_fn.startswith("_"):
            # MLmodel is input: it may name a public method, never __reduce__ or __class__.
            raise ModelFormatError(
                f"python_function.predict_fn is {predict_fn!r}; it must name a public method "
                "of the model (predict, predict_proba, ...)"
            )
        if not callable(getattr(model_impl, predict_fn, None)):
            raise ModelFormatError(
                f"the loaded model has no {predict_fn}() method (python_function.predict_fn)"
            )
        self._model_meta = model_meta
        self._model_impl = model_impl
        self._predict_fn = predict_fn
        self._predict_stream_fn = predict_stream_fn
        self._model_config = dict(model_config or {})
        self._local_path = local_path

    @property
    def metadata(self) -> Model:
        """The model's MLmodel description."""
        return self._model_meta

    @property
    def model_config(self) -> dict[str, Any]:
        """The model configuration in effect (saved values with load-time overrides applied)."""
        return dict(self._model_config)

    @property
    def loader_module(self) -> str | None:
        return self._model_meta.flavors.get(FLAVOR_NAME, {}).get("loader_module")

    @property
    def local_path(self) -> str | None:
        return self._local_path

    def _prepare(
        self, data: Any, params: dict[str, Any] | None, strict_params: bool | None = None
    ) -> tuple[Any, dict[str, Any] | None]:
        from envkit.models.enforcement import validate_prediction_input

        signature = self._model_meta.signature
        if signature is None:
            return data, params
        type_hint = None
        python_model = getattr(self._model_impl, "python_model", None)
        # (envkit's own wrapper checks the type hint itself, whoever loads it)
        if python_model is not None and getattr(self._model_impl, "type_hint", None) is None:
            from envkit.models.type_hints import input_type_hint

            type_hint = input_type_hint(python_model)
        from_example = getattr(signature, "_is_type_hint_from_example", False)
        return validate_prediction_input(
            data,
            params,
            signature,
            type_hint=type_hint,
            input_example=self._saved_input_example() if from_example else None,
            strict_params=strict_params,
        )

    def _saved_input_example(self) -> Any:
        """The saved input example (for ``TypeFromExample`` models), read once."""
        if not hasattr(self, "_input_example_cache"):
            example = None
            info = self._model_meta.saved_input_example_info
            if info and self._local_path:
                from envkit.models.input_example import load_input_example

                example = load_input_example(self._local_path, info)
            self._input_example_cache = example
        return self._input_example_cache

    def predict(
        self, data: Any, params: dict[str, Any] | None = None, *, strict_params: bool | None = None
    ) -> Any:
        """Predict on ``data`` (DataFrame, Series, ndarray, scipy sparse, list, dict or str).

        Input is checked against the model signature when there is one; ``params`` are checked
        against its params schema (missing ones take their defaults). Params the signature does
        not declare are ignored with one ``IgnoredParamsWarning`` (as MLflow 3.x);
        ``strict_params=True`` (or ``ENVKIT_STRICT_PARAMS=1``) makes them an error.
        """
        data, params = self._prepare(data, params, strict_params)
        return self.predict_enforced(data, params)

    def prepare_input(
        self, data: Any, params: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any] | None]:
        """``data`` and ``params`` checked and converted against the signature, as
        :meth:`predict` does before it calls the model: :meth:`predict_enforced` takes them."""
        return self._prepare(data, params)

    def predict_enforced(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Predict on ``data`` and ``params`` that were already checked and converted against
        this model's signature (what :meth:`predict` does first). The scoring server calls it
        with input read by :func:`envkit.models.compiled.compile_input`'s reader, which builds
        the enforced input itself; anything else should call :meth:`predict`."""
        method = getattr(self._model_impl, self._predict_fn)
        return _call_with_params(method, data, params)

    def positional_predictor(self, columns: Sequence[str]) -> Callable[[Any], Any] | None:
        """A function of a 2-D numpy array whose columns are ``columns`` (the signature's, in
        its order) that answers what :meth:`predict_enforced` answers for the DataFrame of that
        array, without building it; None unless the flavor promises that (scikit-learn
        estimators that read columns by position). The scoring server's fast path."""
        factory = getattr(self._model_impl, "positional_predictor", None)
        if factory is None:
            return None
        predictor: Callable[[Any], Any] | None = factory(self._predict_fn, tuple(columns))
        return predictor

    @property
    def row_independent(self) -> bool:
        """Whether each row's prediction depends on that row alone (so rows of different
        requests may be predicted together): the python_function flavor's
        ``row_independent`` key, written by ``save_model(..., row_independent=True)``; without
        it, true for scikit-learn models whose pyfunc calls a row-wise method (``predict``,
        ``predict_proba``...; MLflow-saved ones too), false for anything else."""
        return is_row_independent(self._model_meta)

    @property
    def enforces_by_type_hint(self) -> bool:
        """Whether :meth:`predict` checks input against type hints (not, or not only, against
        the signature's schema): then only :meth:`predict` prepares input correctly."""
        signature = self._model_meta.signature
        return signature is not None and bool(
            getattr(signature, "_is_signature_from_type_hint", False)
            or getattr(signature, "_is_type_hint_from_example", False)
        )

    def predict_stream(self, data: Any, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Predictions as a generator, for models that implement ``predict_stream``."""
        method = (
            getattr(self._model_impl, self._predict_stream_fn, None)
            if self._predict_stream_fn
            else None
        )
        if method is None:
            raise UsageError(
                "this model does not support predict_stream (its python_function flavor is not "
                "streamable); call predict() instead"
            )
        if self._model_meta.signature is not None:
            from envkit.models.enforcement import to_stream_input

            data, params = self._prepare(data, params)
            data = to_stream_input(data)
        result = _call_with_params(method, data, params)
        if not isinstance(result, Iterator):
            raise ModelFailedError(
                f"the model's predict_stream returned {type(result).__name__}, not a generator"
            )
        return result

    def unwrap_python_model(self) -> Any:
        """The user's :class:`~envkit.pyfunc.PythonModel` instance behind this model."""
        python_model = getattr(self._model_impl, "python_model", None)
        if python_model is None:
            raise UsageError(
                "unwrap_python_model() works for custom PythonModel models only; this model was "
                f"loaded by {self.loader_module}"
            )
        return python_model

    def get_raw_model(self) -> Any:
        """The underlying library object (e.g. the scikit-learn estimator)."""
        getter = getattr(self._model_impl, "get_raw_model", None)
        return getter() if getter is not None else self._model_impl

    def __repr__(self) -> str:
        info = {"loader_module": self.loader_module, "uuid": self._model_meta.model_uuid}
        if self._model_meta.run_id:
            info["run_id"] = self._model_meta.run_id
            info["artifact_path"] = self._model_meta.artifact_path
        return "envkit.pyfunc.PyFuncModel(" + ", ".join(f"{k}={v!r}" for k, v in info.items()) + ")"


def is_row_independent(meta: Model) -> bool:
    """:attr:`PyFuncModel.row_independent` from the MLmodel alone (nothing loaded)."""
    conf = meta.flavors.get(FLAVOR_NAME) or {}
    declared = conf.get(ROW_INDEPENDENT)
    if declared is not None:
        return declared is True
    return (
        conf.get("loader_module") in _SKLEARN_LOADERS
        and str(conf.get("predict_fn") or "predict") in SKLEARN_ROW_WISE_FNS
    )


def _accepts_params(method: Any) -> bool:
    """Whether ``method`` takes MLflow's inference ``params`` argument (read once per function:
    inspecting a signature costs more than a small prediction)."""
    function = getattr(method, "__func__", method)
    try:
        return bool(_ACCEPTS_PARAMS[function])
    except (KeyError, TypeError):  # not seen yet, or not hashable
        pass
    import inspect

    try:
        param = inspect.signature(method).parameters.get("params")
    except (TypeError, ValueError):
        param = None
    # `**params` (sklearn's metadata routing) is not MLflow's inference `params` argument.
    accepts = param is not None and param.kind is not param.VAR_KEYWORD
    with contextlib.suppress(TypeError):
        _ACCEPTS_PARAMS[function] = accepts
    return accepts


_ACCEPTS_PARAMS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _call_with_params(method: Any, data: Any, params: dict[str, Any] | None) -> Any:
    if _accepts_params(method):
        return method(data, params=params)
    if params:
        warnings.warn(
            f"params {sorted(params)} were ignored: this model's predict takes no params",
            UserWarning,
            stacklevel=3,
        )
    return method(data)


def _read_config_argument(model_config: Any) -> dict[str, Any] | None:
    if model_config is None or isinstance(model_config, dict):
        return model_config
    path = Path(os.fspath(model_config))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read model_config file {path}: {exc.strerror or exc}") from exc
    import yaml

    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageError(f"model_config file {path} is not valid JSON/YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"model_config file {path} must hold a mapping")
    return data


def merge_model_config(
    saved: dict[str, Any] | None, override: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Saved config with ``override`` applied; keys the model does not declare are ignored."""
    if not override:
        return saved
    saved = dict(saved or {})
    unknown = sorted(set(override) - set(saved))
    if unknown:
        warnings.warn(
            f"model_config key(s) {', '.join(unknown)} ignored: the model declares "
            + (f"only {', '.join(sorted(saved))}" if saved else "no model_config")
            + " (save the model with model_config=... to accept them)",
            UserWarning,
            stacklevel=3,
        )
    saved.update({k: v for k, v in override.items() if k in saved})
    return saved


def _add_code_to_path(model_dir: Path, conf: dict[str, Any]) -> None:
    from envkit.pyfunc.code import code_directory

    code = conf.get("code")
    code_dir = code_directory(model_dir, code)
    if code_dir is None:
        return
    if not code_dir.is_dir():
        raise ModelFormatError(f"the model's code directory {code!r} is missing")
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))


def load_model(
    model_uri: str | os.PathLike[str],
    model_config: dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    suppress_warnings: bool = False,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
) -> PyFuncModel:
    """Load the model at ``model_uri`` (a path or ``runs:/<run_id>/<name>``) as a pyfunc.

    ``model_config`` (a dict or a JSON/YAML file) overrides the saved configuration. The
    model's recorded requirements are compared with this interpreter and mismatches reported
    once per model (``ENVKIT_DEPENDENCY_MISMATCH=ignore|warn|error``). Its pickles are scanned
    before anything loads them: one that calls a dangerous global (``os.system``...) raises
    :class:`~envkit.errors.UnsafeModelError` unless ``trust_model=True`` or the global is in
    ``trusted_types`` (``None``: ``$ENVKIT_TRUST_MODEL`` / ``$ENVKIT_TRUSTED_TYPES``).
    """
    from envkit.models.flavors import import_loader
    from envkit.models.scan import ModelTrust, ensure_safe
    from envkit.models.uri import resolve_model_uri

    local = resolve_model_uri(model_uri)
    check_tree_inside(local)
    ensure_safe(local, ModelTrust.of(trust_model, trusted_types))
    meta = Model._read(local / MLMODEL_FILE_NAME)
    if FLAVOR_NAME not in meta.flavors:
        have = ", ".join(sorted(meta.flavors)) or "none"
        raise UnknownFlavorError(
            f"the model has no python_function flavor (its flavors: {have}), so it cannot be "
            "loaded as a pyfunc; load it with its library flavor instead"
        )
    conf = meta.get_flavor(FLAVOR_NAME)
    loader_module = conf.get("loader_module")
    if not loader_module:
        raise ModelFormatError("python_function flavor has no loader_module")
    if not suppress_warnings:
        from envkit.deps.mismatch import check_model_requirements, not_needed_for

        # MLflow-written models list mlflow for MLflow's loader; envkit's own stands in for it.
        check_model_requirements(local, meta, not_needed=not_needed_for(meta))
    config = merge_model_config(conf.get("config"), _read_config_argument(model_config))
    _add_code_to_path(local, conf)  # before the import: a custom loader may live in code/
    module = import_loader(str(loader_module))
    data_path = resolve_inside(local, str(conf["data"])) if conf.get("data") else local
    try:
        if config:
            impl = module._load_pyfunc(str(data_path), config)
        else:
            impl = module._load_pyfunc(str(data_path))
    except EnvkitError:
        raise
    except Exception as exc:
        raise ModelFailedError(
            f"loading the model failed in {loader_module}: {type(exc).__name__}: {exc}"
        ) from exc
    streamable = bool(conf.get("streamable", False))
    return PyFuncModel(
        meta,
        impl,
        predict_fn=str(conf.get("predict_fn") or "predict"),
        predict_stream_fn=str(conf.get("predict_stream_fn") or "predict_stream")
        if streamable
        else None,
        model_config=config,
        local_path=str(local),
    )
