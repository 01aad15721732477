"""The ``pytorch`` flavor, file-compatible with ``mlflow.pytorch``.

    import envkit.pytorch

    envkit.pytorch.save_model(net, "net_model", input_example=X[:3])   # X: ndarray or DataFrame
    net = envkit.pytorch.load_model("net_model")          # the torch.nn.Module, in eval mode
    pyfunc = envkit.pyfunc.load_model("net_model", model_config={"device": "cpu"})

The whole module is saved as MLflow's ``serialization_format="pickle"`` saves it:
``torch.save(model, "data/model.pth", pickle_module=...)`` (cloudpickle by default,
:mod:`envkit.pytorch.pickle_module`; a TorchScript module with ``torch.jit.save``), the pickle
module's name in ``data/pickle_module_info.txt``, and the flavor section MLflow writes
(``model_data``, ``pytorch_version``, ``code``), so that ``mlflow.pytorch.load_model`` reads
envkit models. envkit loads MLflow's pickled models (``mlflow.pytorch.pickle_module`` is read
as envkit's, without MLflow) and its ``torch.export`` models (``data/model.pt2``, MLflow's
default format), after scanning the pickles inside ``model.pth`` (torch's zip holds
``data.pkl``): a ``.pth`` that would run a command is refused like a ``model.pkl``.

The pyfunc ``predict`` is MLflow's: a DataFrame becomes a float32 tensor and the result a
DataFrame with its index; a numpy array (or a ``torch.Tensor``) gives a numpy array. The device
is the ``device`` of ``model_config`` (``None``: ``cuda`` when available, else ``cpu``).

State dicts: :func:`save_state_dict` writes ``state_dict.pth`` into a directory, as MLflow
does, and :func:`load_state_dict` reads it back with torch's ``weights_only`` loader.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "pytorch"
LOADER_MODULE = "envkit.pytorch"
PICKLE_MODULE = "envkit.pytorch.pickle_module"

# MLflow's file names (mlflow/pytorch/__init__.py).
_MODEL_DATA_SUBPATH = "data"
_SERIALIZED_MODEL_FILE_NAME = "model.pth"
_EXPORTED_MODEL_FILE_NAME = "model.pt2"
_STATE_DICT_FILE_NAME = "state_dict.pth"
_PICKLE_MODULE_INFO_FILE_NAME = "pickle_module_info.txt"
SERIALIZATION_FORMAT_PICKLE = "pickle"
SERIALIZATION_FORMAT_PT2 = "pt2"
SERIALIZATION_FORMATS = (SERIALIZATION_FORMAT_PICKLE, SERIALIZATION_FORMAT_PT2)
CPU_DEVICE = "cpu"
GPU_DEVICE = "cuda"

# Pickle modules a model's pickle_module_info.txt may name, and the module envkit loads it with.
_KNOWN_PICKLE_MODULES = {
    "mlflow.pytorch.pickle_module": PICKLE_MODULE,
    PICKLE_MODULE: PICKLE_MODULE,
    "cloudpickle": "cloudpickle",
    "pickle": "pickle",
    "dill": "dill",
}

__all__ = [
    "FLAVOR_NAME",
    "SERIALIZATION_FORMATS",
    "load_model",
    "load_state_dict",
    "log_model",
    "log_state_dict",
    "save_model",
    "save_state_dict",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]
_logger = logging.getLogger(__name__)


def _torch() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("torch", flavor=FLAVOR_NAME)


def save_model(
    pytorch_model: Any,
    path: str | os.PathLike[str],
    *,
    serialization_format: str = SERIALIZATION_FORMAT_PICKLE,
    pickle_module: Any = None,
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
    **kwargs: Any,
) -> Any:
    """Save a ``torch.nn.Module`` as an MLflow Model directory at ``path``.

    ``serialization_format``: ``"pickle"`` (default) pickles the whole module into
    ``data/model.pth`` with ``pickle_module`` (cloudpickle: :mod:`envkit.pytorch.pickle_module`;
    ``kwargs`` go to ``torch.save``); ``"pt2"`` saves the graph ``torch.export`` traces on the
    input example (a numpy array or a tensor, its first dimension dynamic) into
    ``data/model.pt2``: no pickle of the module, the model class is not needed to load it. A
    ``torch.Tensor`` input example is saved as its numpy array.
    Requirements: torch (with its local label: ``torch==2.13.0+cpu``) and cloudpickle.
    """
    torch = _torch()
    from envkit.errors import UsageError
    from envkit.pyfunc.flavor_kit import LibraryRequirements
    from envkit.pyfunc.save import FlavorWriter, save_model_directory

    if not isinstance(pytorch_model, torch.nn.Module):
        raise UsageError(
            f"pytorch_model must be a torch.nn.Module, not {type(pytorch_model).__name__}"
        )
    if pickle_module is None:
        from envkit.pytorch import pickle_module as default_pickle_module

        pickle_module = default_pickle_module
    if serialization_format not in SERIALIZATION_FORMATS:
        raise UsageError(
            f"serialization_format must be one of {', '.join(SERIALIZATION_FORMATS)}, "
            f"not {serialization_format!r}"
        )
    example_tensor = _example_tensor(torch, input_example)
    if serialization_format == SERIALIZATION_FORMAT_PT2 and example_tensor is None:
        raise UsageError(
            'serialization_format="pt2" traces the model on its input example: give '
            "input_example as a numpy array or a torch.Tensor"
        )
    if isinstance(input_example, torch.Tensor):
        input_example = input_example.detach().cpu().numpy()

    def write(staging: Path, model: Any, code_dir: str | None) -> None:
        data = staging / _MODEL_DATA_SUBPATH
        data.mkdir()
        if serialization_format == SERIALIZATION_FORMAT_PT2:
            _export(torch, pytorch_model, example_tensor, data / _EXPORTED_MODEL_FILE_NAME)
        else:
            (data / _PICKLE_MODULE_INFO_FILE_NAME).write_text(pickle_module.__name__)
            target = str(data / _SERIALIZED_MODEL_FILE_NAME)
            if isinstance(pytorch_model, torch.jit.ScriptModule):
                torch.jit.save(pytorch_model, target)
            else:
                torch.save(pytorch_model, target, pickle_module=pickle_module, **kwargs)
        model.add_flavor(
            FLAVOR_NAME,
            model_data=_MODEL_DATA_SUBPATH,
            pytorch_version=str(torch.__version__),
            code=code_dir,
        )
        pyfunc_conf: dict[str, Any] = {
            "loader_module": LOADER_MODULE,
            "data": _MODEL_DATA_SUBPATH,
            "pickle_module_name": pickle_module.__name__,
            "config": {"device": None},
        }
        if code_dir:
            pyfunc_conf["code"] = code_dir
        model.add_flavor("python_function", **pyfunc_conf)

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=LibraryRequirements(("torch", "cloudpickle")).with_envkit,
            pyfunc_impl=lambda staging: _PyTorchWrapper(pytorch_model, CPU_DEVICE),
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


def _example_tensor(torch: Any, input_example: Any) -> Any:
    """The input example as a tensor (None: it is no array nor tensor)."""
    import numpy as np

    if isinstance(input_example, torch.Tensor):
        return input_example.detach()
    if isinstance(input_example, np.ndarray):
        return torch.from_numpy(np.require(input_example, requirements="W"))
    return None


def _export(torch: Any, model: Any, example: Any, target: Path) -> None:
    """``torch.export`` the module on ``example``, its first dimension dynamic (the batch), and
    save the program at ``target``."""
    from torch.export import Dim

    batch = getattr(Dim, "AUTO", None) or Dim("batch")
    dynamic = [{0: batch}] if example.dim() > 0 else None
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
    torch.export.save(program, str(target))


def log_model(
    pytorch_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``pytorch_model`` into the active run (see :func:`envkit.start_run`); returns
    ModelInfo."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(__name__, artifact_path, name, pytorch_model=pytorch_model, **kwargs)


def load_model(
    model_uri: str | os.PathLike[str],
    *,
    device: str | None = None,
    trust_model: bool | None = None,
    trusted_types: Sequence[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Load the ``torch.nn.Module`` of the model at ``model_uri`` (in eval mode; moved to
    ``device`` when given). Its pickles are scanned first; ``kwargs`` go to ``torch.load``."""
    from envkit.pyfunc.flavor_kit import open_flavor

    torch = _torch()
    opened = open_flavor(
        model_uri, FLAVOR_NAME, trust_model=trust_model, trusted_types=trusted_types
    )
    saved_with = opened.conf.get("pytorch_version")
    if saved_with and saved_with != torch.__version__:
        _logger.warning(
            "the model was saved with torch %s; this is torch %s", saved_with, torch.__version__
        )
    data = opened.file("model_data", _MODEL_DATA_SUBPATH)
    return _load(data, opened.path, device, **kwargs)


def _pickle_module(data: Path, model_dir: Path) -> Any:
    """The pickle module ``pickle_module_info.txt`` names: one envkit knows (MLflow's is read as
    envkit's), or a module of the model's own code; never any other module a file could name."""
    import importlib

    from envkit.errors import ModelFormatError

    info = data / _PICKLE_MODULE_INFO_FILE_NAME
    name = info.read_text().strip() if info.is_file() else PICKLE_MODULE
    known = _KNOWN_PICKLE_MODULES.get(name)
    if known is None:
        top = name.split(".", 1)[0]
        own = top.isidentifier() and any(
            (model_dir / "code" / f"{top}{suffix}").exists() for suffix in ("", ".py")
        )
        if not own:
            raise ModelFormatError(
                f"the pytorch model's pickle module {name!r} is not one envkit knows "
                f"({', '.join(sorted(_KNOWN_PICKLE_MODULES))}) nor one of the model's code"
            )
        known = name
    try:
        return importlib.import_module(known)
    except ImportError as exc:
        raise ModelFormatError(
            f"the pickle module the pytorch model was saved with, {name!r}, cannot be imported "
            f"({exc})"
        ) from exc


def _load(data: Path, model_dir: Path, device: str | None, **kwargs: Any) -> Any:
    """The module in ``data`` (the flavor's ``model_data`` directory, or a model file)."""
    torch = _torch()
    from envkit.errors import ModelFormatError

    pickled = data / _SERIALIZED_MODEL_FILE_NAME if data.is_dir() else data
    exported = data / _EXPORTED_MODEL_FILE_NAME if data.is_dir() else data
    if pickled.is_file() and pickled.suffix != ".pt2":
        model = _load_pickled(pickled, data if data.is_dir() else data.parent, model_dir, **kwargs)
        model.eval()
    elif exported.is_file():
        # torch.export's archive: MLflow's default format (serialization_format="pt2")
        model = torch.export.load(str(exported)).module()
    else:
        raise ModelFormatError(
            f"the pytorch model has neither {_SERIALIZED_MODEL_FILE_NAME} nor "
            f"{_EXPORTED_MODEL_FILE_NAME} in {data.name}/"
        )
    if device:
        model.to(device=device)
    return model


def _load_pickled(path: Path, data: Path, model_dir: Path, **kwargs: Any) -> Any:
    import zipfile

    torch = _torch()
    if zipfile.is_zipfile(path) and _is_torchscript(path):
        kwargs.pop("pickle_module", None)
        return torch.jit.load(str(path), **kwargs)
    kwargs.setdefault("pickle_module", _pickle_module(data, model_dir))
    # The whole module is a pickle: torch's weights_only loader refuses it. envkit scanned the
    # model's pickles before this point (open_flavor / the pyfunc loader).
    kwargs.setdefault("weights_only", False)
    return torch.load(str(path), **kwargs)


def _is_torchscript(path: Path) -> bool:
    """A ``torch.jit.save`` archive (it holds ``constants.pkl`` and ``code/``)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def save_state_dict(state_dict: Any, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """Save ``state_dict`` (a dict) as ``path/state_dict.pth`` (MLflow's layout); ``kwargs``
    go to ``torch.save``."""
    torch = _torch()
    from envkit.errors import UsageError

    if not isinstance(state_dict, dict):
        raise UsageError(f"state_dict must be a dict, not {type(state_dict).__name__}")
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, str(target / _STATE_DICT_FILE_NAME), **kwargs)


def log_state_dict(state_dict: Any, artifact_path: str, **kwargs: Any) -> str:
    """Save ``state_dict`` into the active run's artifacts as ``artifact_path/state_dict.pth``
    (see :func:`envkit.start_run`; MLflow's active run when there is one), as MLflow's
    ``log_state_dict``; returns its URI, ``runs:/<run_id>/<artifact_path>``, which
    :func:`load_state_dict` reads. ``kwargs`` go to ``torch.save``."""
    from envkit.models.tracking import log_directory

    def write(local: Path, run_id: str, dest: Path | None) -> None:
        save_state_dict(state_dict, local, **kwargs)

    return log_directory(artifact_path, write, what="a state dict")[1]


def load_state_dict(state_dict_uri: str | os.PathLike[str], **kwargs: Any) -> Any:
    """The state dict in ``state_dict_uri/state_dict.pth`` (a directory or a run's artifact),
    read with torch's ``weights_only`` loader unless ``kwargs`` say otherwise."""
    from envkit.models.uri import resolve_model_uri

    torch = _torch()
    local = resolve_model_uri(state_dict_uri)
    kwargs.setdefault("weights_only", True)
    return torch.load(str(local / _STATE_DICT_FILE_NAME), **kwargs)


class _PyTorchWrapper:
    """pyfunc adapter (MLflow's): a DataFrame in, a float32 tensor to the module, a DataFrame
    with the input's index out; a numpy array or a tensor in, a numpy array out."""

    def __init__(self, pytorch_model: Any, device: str) -> None:
        self.pytorch_model = pytorch_model
        self.device = device

    def get_raw_model(self) -> Any:
        return self.pytorch_model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        import numpy as np

        torch = _torch()
        params = dict(params or {})
        if "device" in params:
            raise ValueError(
                "device is not a predict parameter: give it at load time, "
                "envkit.pyfunc.load_model(model, model_config={'device': 'cuda'})"
            )
        frame = _is_dataframe(data)
        if frame:
            # pandas' copy-on-write hands out read-only arrays: torch wants writable memory
            tensor = torch.from_numpy(np.require(data.to_numpy(dtype=np.float32), requirements="W"))
        elif isinstance(data, np.ndarray):
            tensor = torch.from_numpy(np.require(data, requirements="W"))
        elif isinstance(data, torch.Tensor):
            tensor = data
        else:
            raise TypeError(
                "the pytorch flavor predicts on a pandas DataFrame, a numpy array or a "
                f"torch.Tensor, not {type(data).__name__}"
            )
        with torch.no_grad():
            preds = self.pytorch_model(tensor.to(self.device), **params)
        if not isinstance(preds, torch.Tensor):
            raise TypeError(
                f"the pytorch model returned {type(preds).__name__}; its pyfunc needs one tensor"
            )
        out = preds.detach().to(CPU_DEVICE).numpy()
        if frame:
            import pandas as pd

            return pd.DataFrame(out, index=data.index)
        return out


def _is_dataframe(data: Any) -> bool:
    import sys

    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


def _device(model_config: dict[str, Any] | None) -> str:
    device = (model_config or {}).get("device")
    if device:
        return str(device)
    return GPU_DEVICE if _torch().cuda.is_available() else CPU_DEVICE


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> _PyTorchWrapper:
    """Loader contract (also used for models MLflow wrote with ``mlflow.pytorch``): ``path`` is
    the python_function ``data`` directory (``data/``), a model file in it, or the model
    directory."""
    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory

    target = Path(path)
    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    if target.resolve() == opened.path.resolve():
        target = opened.file("model_data", _MODEL_DATA_SUBPATH)
    device = _device(model_config)
    return _PyTorchWrapper(_load(target, opened.path, device), device)
