"""The save pipeline every flavor shares.

stage (sibling temp dir) -> code_paths -> flavor writes its model -> input example ->
check the example predicts + infer the signature -> capture requirements (subprocess) ->
environment files -> MLmodel + metadata/ -> atomic rename. A failure anywhere leaves nothing.

It lives at the flavor layer, not in :mod:`envkit.models` (the format), because it loads the
model as a pyfunc to check the example and runs the capture of :mod:`envkit.deps`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from envkit._fs import copy_into, directory_size, staged_directory
from envkit.errors import EnvkitError, ModelFailedError, SchemaEnforcementError, UsageError
from envkit.models.model import Model

CODE_DIR = "code"


def strict_mode(strict: bool | None) -> bool:
    """``strict`` if given, else ``ENVKIT_STRICT_CAPTURE`` (true/false, 1/0, yes/no)."""
    if strict is not None:
        return bool(strict)
    from envkit.deps.envvars import boolean_env

    return boolean_env("ENVKIT_STRICT_CAPTURE", False)


@dataclass
class FlavorWriter:
    """What a flavor contributes to a save.

    ``write(staging_dir, model, code_dir)`` serializes the model object into ``staging_dir``
    and adds the flavor sections (its own and ``python_function``) to ``model``.
    ``default_requirements()`` are what loading the flavor needs (used when capture is off or
    fails). ``python_model`` is the user's PythonModel, for signatures from type hints.
    ``pyfunc_impl(staging_dir)`` returns the pyfunc implementation of the in-memory model (what
    ``_load_pyfunc`` would return), so that the input example is checked without loading the
    model a second time; without it the model is loaded from the staging directory.
    ``infer_outputs=False``: a signature inferred from the input example has no outputs (a
    flavor whose predictions have no MLflow type, for an MLflow that cannot read ``any``).
    """

    write: Callable[[Path, Model, str | None], None]
    default_requirements: Callable[[], list[str]]
    python_model: Any = None
    pyfunc_impl: Callable[[Path], Any] | None = None
    infer_outputs: bool = True


def save_model_directory(
    path: str | os.PathLike[str],
    writer: FlavorWriter,
    *,
    envkit_model: Model | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: Sequence[str] | str | os.PathLike[str] | None = None,
    extra_pip_requirements: Sequence[str] | str | os.PathLike[str] | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    conda_env: dict[str, Any] | str | os.PathLike[str] | None = None,
) -> Model:
    """Write a complete model directory at ``path`` atomically and return its :class:`Model`.

    ``conda_env`` (a mapping or a conda YAML file, as MLflow) becomes ``conda.yaml``; its pip
    section is the model's requirements (requirements.txt, python_env.yaml)."""
    from envkit.deps.capture import (
        capture_disabled,
        capture_environment,
        check_user_requirements,
    )
    from envkit.pyfunc.code import model_code_on_path

    strict = strict_mode(strict)
    given = [conda_env, pip_requirements, extra_pip_requirements]
    if sum(arg is not None for arg in given) > 1:
        raise UsageError(
            "Only one of `conda_env`, `pip_requirements`, and `extra_pip_requirements` can be "
            "specified"
        )
    user_conda = None
    if conda_env is not None:
        from envkit.deps.envfiles import conda_pip_requirements, user_conda_env

        user_conda = user_conda_env(
            conda_env if isinstance(conda_env, dict) else Path(os.fspath(conda_env))
        )
        pip_requirements = conda_pip_requirements(user_conda)
    user_reqs = check_user_requirements(pip_requirements, extra_pip_requirements)
    _check_signature_argument(signature)
    for code_path in code_paths or []:
        if not Path(code_path).exists():
            raise UsageError(f"code path {code_path} does not exist")
    model = envkit_model or Model()
    if metadata is not None:
        model.metadata = metadata
    with staged_directory(path, overwrite=overwrite) as staging:
        code_dir = None
        if code_paths:
            code_dir = CODE_DIR
            for code_path in code_paths:
                copy_into(code_path, staging / CODE_DIR)
        # The model is built and its example checked with sys.path as a load will give it.
        with model_code_on_path(staging, code_dir):
            writer.write(staging, model, code_dir)
            pyfunc_conf = model.flavors.get("python_function")
            if pyfunc_conf is not None:
                pyfunc_conf.setdefault("python_version", platform.python_version())
            example_info = None
            if input_example is not None:
                from envkit.models.input_example import save_input_example

                example_info = save_input_example(staging, input_example)
                model.saved_input_example_info = example_info
            if signature is not None and signature is not False:
                model.signature = signature
            model.save(staging)
            example_failure = None
            if pyfunc_conf is not None:
                example_failure = _check_example_and_signature(
                    staging, model, writer, input_example, signature, strict
                )
        model.model_size_bytes = directory_size(staging) - (staging / "MLmodel").stat().st_size
        # A model with no python_function flavor (a spacy pipeline without a text categorizer)
        # cannot be loaded by the capture process: its flavor's requirements, said as skipped.
        skip = contextlib.nullcontext() if pyfunc_conf is not None else capture_disabled(_NO_PYFUNC)
        with skip:
            env = capture_environment(
                staging,
                model,
                default_requirements=writer.default_requirements(),
                user_requirements=user_reqs,
                code_dir=code_dir,
                # A failing example was reported already; capture only what loading imports.
                has_input_example=example_info is not None and example_failure is None,
                strict=strict,
            )
        if example_failure is not None and env.provenance is not None:
            _example_failed_in_capture(env.provenance.capture, example_failure)
        env.write(staging, model)
        if user_conda is not None:
            from envkit.deps.envfiles import write_user_conda_env

            write_user_conda_env(staging, user_conda, env.requirements)
        model.save(staging)
        from envkit.deps.envfiles import copy_metadata

        copy_metadata(staging)
    return model


_NO_PYFUNC = (
    "the model has no python_function flavor for the capture process to load: the flavor's "
    "requirements"
)


def _example_failed_in_capture(capture: Any, failure: str) -> None:
    """The capture record of a model whose input example failed when saving: ``partial``."""
    from envkit.deps.provenance import CAPTURE_PARTIAL, CAPTURE_SKIPPED

    if capture.status == CAPTURE_SKIPPED:
        return  # the requirements are the user's: nothing was captured
    reason = f"the input example failed to predict when saving ({failure}); {EXAMPLE_NOT_CAPTURED}"
    capture.reason = f"{capture.reason}; {reason}" if capture.reason else reason
    capture.status = CAPTURE_PARTIAL


def _check_signature_argument(signature: Any) -> None:
    if signature is None or signature is False:
        return
    from envkit.models.signature import ModelSignature

    if not isinstance(signature, ModelSignature):
        raise UsageError(
            f"signature must be a ModelSignature (see envkit.models.infer_signature), None, or "
            f"False for no signature; got {type(signature).__name__}"
        )


def _check_example_and_signature(
    staging: Path,
    model: Model,
    writer: FlavorWriter,
    input_example: Any,
    signature: Any,
    strict: bool,
) -> str | None:
    """Predict on the input example (it must work) and infer a missing signature.

    As MLflow does: the signature comes from the caller, else from the ``predict`` type hints,
    else from the in-memory example (inputs, params) and from what the model returns for it,
    the example going through the same conversion and enforcement as ``PyFuncModel.predict``.
    ``signature=False`` means: write no signature. Returns why the example failed to predict
    (None: it predicted, or there is none).
    """
    import copy

    from envkit.models.input_example import split_input_example

    signature = _signature_from_type_hints(
        staging, model, writer.python_model, input_example, signature
    )
    if input_example is None:
        return None
    data, example_params = split_input_example(input_example)
    inferring = signature is None
    if inferring:
        # Inputs and params first: the example is enforced against them before predicting.
        _infer_input_signature(model, data, example_params, writer.python_model)
    elif signature is False:
        model.signature = None
    output = None
    failure: str | None = None
    predictor = None
    try:
        predictor = _example_predictor(staging, model, writer)
        output = predictor.predict(copy.deepcopy(data), params=example_params)
    except SchemaEnforcementError as exc:
        if inferring:
            # The signature inferred from the example refuses the example itself (timezone-aware
            # datetimes, say): saving it would make a model that rejects its own example. As
            # MLflow does, the model is saved without a signature.
            model.signature = None
            model.save(staging)
            warnings.warn(
                f"the signature inferred from the input example does not accept it "
                f"({exc.message}); the model was saved without a signature, as MLflow does",
                UserWarning,
                stacklevel=4,
            )
            again = _predict_failure(staging, model, writer, predictor, data, example_params)
            return None if again is None else _example_failed(again, strict)
        if signature is not False:
            raise UsageError(
                f"the input example does not match the model signature: {exc.message}"
            ) from exc
        failure = _example_failed(exc, strict)
    except Exception as exc:
        failure = _example_failed(exc, strict)
    if inferring:
        predicted = failure is None and writer.infer_outputs
        _infer_full_signature(model, data, output, example_params, predicted)
    model.save(staging)
    return failure


def _signature_from_type_hints(
    staging: Path, model: Model, python_model: Any, input_example: Any, signature: Any
) -> Any:
    """The caller's ``signature``, else the one ``predict``'s type hints give (then saved)."""
    from envkit.models.signature import infer_signature_from_type_hints

    if signature is not None or python_model is None:
        return signature
    hinted = infer_signature_from_type_hints(python_model, input_example)
    if hinted is not None:
        model.signature = hinted
        model.save(staging)
        return hinted
    return signature


def _infer_input_signature(model: Model, data: Any, example_params: Any, python_model: Any) -> None:
    """The inputs and params of ``model.signature``, from the example (no output yet)."""
    from envkit.models import type_hints
    from envkit.models.signature import infer_signature

    model.signature = infer_signature(data, None, example_params)
    raw_hint = type_hints.predict_type_hints(python_model).input if python_model else None
    if raw_hint is not None and type_hints.is_type_from_example(raw_hint):
        import pandas as pd

        if isinstance(data, (list, pd.DataFrame, pd.Series)):
            model.signature._is_type_hint_from_example = True
            model.type_hint_from_example = True


def _predict_failure(
    staging: Path,
    model: Model,
    writer: FlavorWriter,
    predictor: Any,
    data: Any,
    example_params: Any,
) -> Exception | None:
    """Predict on the example again (the predictor reads the signature from ``model``); the
    exception it raises, or None."""
    import copy

    try:
        (predictor or _example_predictor(staging, model, writer)).predict(
            copy.deepcopy(data), params=example_params
        )
    except Exception as again:
        return again
    return None


def _infer_full_signature(
    model: Model, data: Any, output: Any, example_params: Any, ok: bool
) -> None:
    """``model.signature`` from the example and, when it predicted, from its output."""
    from envkit.models.signature import infer_signature

    inputs = model.signature.inputs if model.signature is not None else None
    if ok and inputs is not None and not inputs.is_tensor_spec():
        import numpy as np

        if isinstance(output, np.ndarray) and output.ndim == 1:
            # Row-wise predictions of a column-based model: one ColSpec, as MLflow infers.
            import pandas as pd

            output = pd.Series(output)
    from_example = bool(getattr(model.signature, "_is_type_hint_from_example", False))
    inferred = infer_signature(data, output if ok else None, example_params)
    inferred._is_type_hint_from_example = from_example
    model.signature = inferred


def _example_predictor(staging: Path, model: Model, writer: FlavorWriter) -> Any:
    """A PyFuncModel for checking the example: the in-memory model when the flavor offers it."""
    from envkit.pyfunc.loading import PyFuncModel, load_model

    if writer.pyfunc_impl is None:
        loaded = load_model(staging, suppress_warnings=True)
        loaded._model_meta = model
        return loaded
    conf = model.get_flavor("python_function")
    return PyFuncModel(
        model,
        writer.pyfunc_impl(staging),
        predict_fn=str(conf.get("predict_fn") or "predict"),
        model_config=conf.get("config"),
        local_path=str(staging),
    )


def _example_failed(exc: BaseException, strict: bool) -> str:
    """Warn (strict: raise) that the example failed to predict; returns the reason."""
    from envkit.deps.envvars import redact_values

    reason = exc.message if isinstance(exc, EnvkitError) else f"{type(exc).__name__}: {exc}"
    message = f"the model failed to predict on its input example: {redact_values(reason)}"
    if strict:
        raise ModelFailedError(message + " (strict mode)") from None
    warnings.warn(
        f"{message}; {EXAMPLE_NOT_CAPTURED}, so requirements imported and environment variables "
        "read only while predicting may be missing (fix the example, or pass "
        "extra_pip_requirements)",
        UserWarning,
        stacklevel=5,
    )
    return redact_values(reason)


# Recorded in requirements.provenance.json when the example failed in the saving process.
EXAMPLE_NOT_CAPTURED = (
    "the capture recorded what loading the model imports and what its code and pickles "
    "reference, not what predicting imports"
)
