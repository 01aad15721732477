"""Checks on the host, before anything is built: the model reads, its paths stay inside it,
the input parses. Bad input fails here with exit code 2, not after a build of minutes."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit.errors import ModelFormatError, SchemaEnforcementError, ServingInputError, UsageError

if TYPE_CHECKING:
    from envkit.models.model import Model
    from envkit.models.scan import ModelTrust

logger = logging.getLogger(__name__)


def check_model(
    model_dir: Path, *, need_input_example: bool = True, trust: ModelTrust | None = None
) -> Model:
    """The model's :class:`~envkit.models.model.Model`, after checking on the host what the
    sandbox would otherwise find out only after building: no symlink leads outside the
    model, the MLmodel file reads, the model has a python_function flavor with a loader,
    every path a flavor records stays inside the model (and the pyfunc flavor's exist), the
    signature parses, the input example is there. Raises the error (exit code 2) the model
    would raise in-process. Its pickles are scanned too (``trust``: what the caller vouches
    for): a dangerous one raises :class:`~envkit.errors.UnsafeModelError` (exit code 1)
    before anything is built or loaded."""
    from envkit._fs import check_tree_inside
    from envkit.models.model import MLMODEL_FILE_NAME, Model, check_recorded_paths
    from envkit.models.scan import ModelTrust, ensure_safe

    check_tree_inside(model_dir)
    model = Model._read(model_dir / MLMODEL_FILE_NAME)
    if "python_function" not in model.flavors:
        have = ", ".join(sorted(model.flavors)) or "none"
        raise ModelFormatError(
            f"the model has no python_function flavor (its flavors: {have}); envkit "
            "validates models it can load as a pyfunc"
        )
    pyfunc = model.get_flavor("python_function")
    if not pyfunc.get("loader_module"):
        raise ModelFormatError("python_function flavor has no loader_module")
    from envkit.models.flavors import check_loader_name, envkit_loader_for

    check_loader_name(envkit_loader_for(str(pyfunc["loader_module"])))

    check_recorded_paths(model_dir, model, need_input_example=need_input_example)
    model.signature  # noqa: B018 - parsing it raises ModelFormatError for a broken one
    ensure_safe(model_dir, trust or ModelTrust())
    return model


def check_input(path: Path, content_type: str, model: Model) -> None:
    """Parse ``--input`` on the host as the runner will: a malformed payload is a
    :class:`~envkit.errors.ServingInputError` (exit 2) now, not after a build. Values that do
    not fit the signature are left to the model's own environment to report."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ServingInputError(f"--input {path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise UsageError(f"--input {path}: {exc.strerror or exc}") from None
    signature = model.signature
    try:
        from envkit.models.serving_input import parse_serving_input

        parse_serving_input(
            text,
            content_type="text/csv" if content_type == "csv" else "application/json",
            schema=signature.inputs if signature is not None else None,
            params_schema=getattr(signature, "params", None) if signature is not None else None,
            signature_from_type_hint=bool(model.is_signature_from_type_hint),
        )
    except ServingInputError as exc:
        raise ServingInputError(f"--input {path}: {exc.message}") from None
    except SchemaEnforcementError:
        return  # the model's environment reports it, with the model's own conversions
    except ImportError:  # no pandas/numpy here: at least the JSON must parse
        if content_type != "csv":
            try:
                json.loads(text)
            except (ValueError, RecursionError) as exc:
                why = exc if isinstance(exc, ValueError) else "nested too deeply"
                raise ServingInputError(f"--input {path}: not valid JSON ({why})") from None
    except Exception as exc:  # left to the environment, where the model's packages are
        logger.debug("checking --input on the host: %s: %s", type(exc).__name__, exc)


def input_type(input_path: str | os.PathLike[str] | None, content_type: str | None) -> str | None:
    if content_type:
        lowered = content_type.lower()
        if lowered in ("json", "application/json"):
            return "json"
        if lowered in ("csv", "text/csv"):
            return "csv"
        raise UsageError(f"unknown content type {content_type!r}; use json or csv")
    if input_path is None:
        return None
    return "csv" if str(input_path).lower().endswith(".csv") else "json"


def check_input_file(input_path: str | os.PathLike[str] | None) -> Path | None:
    if input_path is None:
        return None
    path = Path(input_path).expanduser().absolute()
    if path.is_dir():
        raise UsageError(f"--input {input_path} is a directory; give a file (or - for stdin)")
    if not path.is_file():
        raise UsageError(f"--input {input_path}: no such file")
    return path


def write_input_data(data: Any, path: Path, kind: str) -> None:
    """Serialize ``input_data`` as a serving payload (JSON) or CSV."""
    module = type(data).__module__
    if kind == "csv":
        if not hasattr(data, "to_csv"):
            raise UsageError("content_type='csv' needs a pandas DataFrame as input_data")
        data.to_csv(path, index=False)
        return
    if module.startswith("pandas") and hasattr(data, "to_json"):
        if hasattr(data, "columns"):
            payload: Any = {"dataframe_split": json.loads(data.to_json(orient="split"))}
            payload["dataframe_split"].pop("index", None)
        else:
            payload = {"inputs": json.loads(data.to_json(orient="values"))}
    elif module.startswith("numpy") and hasattr(data, "tolist"):
        payload = {"inputs": data.tolist()}
    elif isinstance(data, dict) and set(data) & {
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
    }:
        payload = data
    else:
        payload = {"inputs": data}
    try:
        path.write_text(json.dumps(payload), encoding="utf-8")
    except TypeError as exc:
        raise UsageError(f"input_data cannot be sent as JSON: {exc}") from exc


def cuda_builds(requirements: Iterable[str]) -> list[str]:
    """The requirements that ask for a CUDA build: a ``+cuXXX`` local label (PyTorch's wheels)
    or NVIDIA's CUDA libraries (``nvidia-cublas-cu12``...), as recorded."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    found = []
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.name.lower().startswith("nvidia-"):
            found.append(line)
            continue
        for specifier in requirement.specifier:
            try:
                local = Version(specifier.version).local
            except InvalidVersion:
                continue
            if local and _CUDA_LABEL.match(local):
                found.append(line)
                break
    return found


_CUDA_LABEL = re.compile(r"cu\d+")


def has_nvidia_gpu(dev: Path = Path("/dev"), proc: Path = Path("/proc")) -> bool:
    """Whether an NVIDIA GPU is visible here: a device node ``/dev/nvidia0``... or a GPU listed
    by the driver under ``/proc/driver/nvidia/gpus``."""
    gpus = proc / "driver" / "nvidia" / "gpus"
    try:
        if gpus.is_dir() and any(gpus.iterdir()):
            return True
        return any(p.name[len("nvidia") :].isdigit() for p in dev.glob("nvidia[0-9]*"))
    except OSError:
        return False


def gpu_build_note(requirements: Iterable[str], *, gpu: bool | None = None) -> str | None:
    """A warning when the environment records a CUDA build and this machine has no NVIDIA GPU
    (``gpu``: the probe's answer, :func:`has_nvidia_gpu` by default); None otherwise."""
    builds = cuda_builds(requirements)
    if not builds or (has_nvidia_gpu() if gpu is None else gpu):
        return None
    return (
        f"the model records a CUDA build ({', '.join(builds)}) and this machine has no NVIDIA "
        "GPU: it ran on the CPU here, so this validation does not show that it runs on a GPU"
    )
