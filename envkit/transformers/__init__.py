"""The ``transformers`` flavor, file-compatible with ``mlflow.transformers``.

    import envkit.transformers

    pipe = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)
    envkit.transformers.save_model(pipe, "model", input_example=["a sentence"])
    pipe = envkit.transformers.load_model("model")        # the transformers Pipeline
    pyfunc = envkit.pyfunc.load_model("model")            # MLflow's pyfunc input/output formats

The weights are written with ``save_pretrained`` (``model/``, and ``components/<name>/`` for
the tokenizer, feature extractor or image processor), the flavor section has MLflow's keys
(``task``, ``instance_type``, ``pipeline_model_type``, ``source_model_name``,
``model_binary``, ``components``, ``<component>_type``, ``torch_dtype``, ``framework`` with
transformers 4) and ``model_config`` goes to the python_function section's ``config``, applied
to each pipeline call. Models are loaded from their directory only: envkit downloads nothing
from the Hugging Face Hub and runs no custom model code (see README "transformers").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

FLAVOR_NAME = "transformers"
LOADER_MODULE = "envkit.transformers"
MODEL_BINARY = "model"
COMPONENTS_DIR = "components"
# What a pipeline may carry besides its model, as MLflow saves them (a processor is not saved).
COMPONENT_NAMES = ("feature_extractor", "tokenizer", "image_processor")
_AUTO_COMPONENTS = {
    "tokenizer": "AutoTokenizer",
    "feature_extractor": "AutoFeatureExtractor",
    "image_processor": "AutoImageProcessor",
}

__all__ = [
    "FLAVOR_NAME",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

RequirementsArg = Union[Sequence[str], str, "os.PathLike[str]", None]


def _transformers() -> Any:
    from envkit.pyfunc.flavor_kit import import_library

    return import_library("transformers", flavor=FLAVOR_NAME)


def backend_of(model: Any) -> str:
    """The distribution of the deep learning backend ``model`` runs on: tensorflow or flax for
    transformers 4's TF and Flax models, else torch (the only backend of transformers 5)."""
    bases = {cls.__name__ for cls in type(model).__mro__} if model is not None else set()
    if "TFPreTrainedModel" in bases:
        return "tensorflow"
    if "FlaxPreTrainedModel" in bases:
        return "flax"
    return "torch"


def get_default_pip_requirements(model: Any = None) -> list[str]:
    """transformers and the deep learning backend ``model`` runs on (:func:`backend_of`;
    torch without a model), pinned to the installed versions (torch with its local label,
    e.g. ``+cpu``)."""
    from envkit.pyfunc.flavor_kit import LibraryRequirements

    return LibraryRequirements(("transformers", backend_of(model))).pip()


def _pipeline_of(transformers_model: Any, task: str | None) -> Any:
    """The Pipeline to save: ``transformers_model`` itself, or one built from a dict of its
    parts (``model``, ``tokenizer``...; ``task`` is then required)."""
    from envkit.errors import UsageError

    transformers = _transformers()
    if isinstance(transformers_model, transformers.Pipeline):
        if task is not None and task != transformers_model.task:
            raise UsageError(
                f"task={task!r} differs from the pipeline's task {transformers_model.task!r}"
            )
        return transformers_model
    if isinstance(transformers_model, dict):
        unknown = sorted(set(transformers_model) - {"model", *COMPONENT_NAMES})
        if unknown or "model" not in transformers_model:
            raise UsageError(
                "a dict transformers_model holds 'model' and optionally "
                f"{', '.join(COMPONENT_NAMES)}; got {', '.join(map(str, transformers_model))}"
            )
        if task is None:
            raise UsageError("task= is required to save a dict of pipeline components")
        return transformers.pipeline(task=task, **transformers_model)
    raise UsageError(
        "transformers_model must be a transformers Pipeline or a dict of its components, not "
        f"{type(transformers_model).__name__} (a local checkpoint path is not supported)"
    )


def _torch_dtype(pipeline: Any, torch_dtype: Any) -> str | None:
    """The dtype MLflow records: the one given, else the model's torch dtype."""
    if torch_dtype is not None:
        return str(torch_dtype)
    dtype = getattr(pipeline.model, "dtype", None)
    return str(dtype) if dtype is not None and type(dtype).__name__ == "dtype" else None


def flavor_config(pipeline: Any, torch_dtype: Any = None) -> dict[str, Any]:
    """The flavor section's keys for ``pipeline``, in MLflow's order (weights saved locally)."""
    conf: dict[str, Any] = {"task": pipeline.task, "instance_type": type(pipeline).__name__}
    framework = getattr(pipeline, "framework", None)  # transformers 4 only
    if framework:
        conf["framework"] = framework
    dtype = _torch_dtype(pipeline, torch_dtype)
    if dtype:
        conf["torch_dtype"] = dtype
    conf["pipeline_model_type"] = type(pipeline.model).__name__
    conf["source_model_name"] = getattr(pipeline.model, "name_or_path", "") or ""
    conf["model_binary"] = MODEL_BINARY
    components = [name for name in COMPONENT_NAMES if getattr(pipeline, name, None)]
    for name in components:
        conf[f"{name}_type"] = type(getattr(pipeline, name)).__name__
    conf["components"] = components
    return conf


def readable_by_all(root: Path) -> None:
    """Give the files under ``root`` the permissions the umask allows (safetensors writes its
    weights 0600): the sandbox runs the model as another user, which must read them."""
    mask = os.umask(0)
    os.umask(mask)
    for file in root.rglob("*"):
        if file.is_file() and not file.is_symlink():
            file.chmod((file.stat().st_mode | 0o444) & ~mask & 0o7777)


def _default_signature(task: str) -> Any:
    """MLflow's signature of a task's pyfunc when there is no input example to infer from."""
    import numpy as np

    from envkit.models.schema import ColSpec, Schema, TensorSpec
    from envkit.models.signature import ModelSignature

    text = Schema([ColSpec("string")])
    if task == "text-classification":
        outputs = Schema([ColSpec("string", name="label"), ColSpec("double", name="score")])
    elif task == "feature-extraction":
        outputs = Schema([TensorSpec(np.dtype("float64"), [-1], "double")])
    else:
        outputs = text
    return ModelSignature(inputs=text, outputs=outputs)


def save_model(
    transformers_model: Any,
    path: str | os.PathLike[str],
    *,
    task: str | None = None,
    torch_dtype: Any = None,
    model_config: dict[str, Any] | None = None,
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
    """Save a transformers ``Pipeline`` (or a dict ``{"model": ..., "tokenizer": ...}`` with
    ``task``) as an MLflow Model directory at ``path``.

    ``model_config`` (keyword arguments of the pipeline call, e.g. ``{"max_new_tokens": 20}``)
    is applied by the pyfunc to every prediction and checked on the input example when there
    is one. Without an input example nor a signature, the signature is MLflow's default for
    the task. The pyfunc serves text-classification, token-classification, fill-mask,
    feature-extraction and text-generation pipelines; other tasks are saved without one.
    """
    from envkit._version import __version__
    from envkit.errors import UsageError
    from envkit.models.model import Model
    from envkit.pyfunc.save import FlavorWriter, save_model_directory
    from envkit.transformers._pyfunc import PYFUNC_TASKS, TransformersWrapper

    transformers = _transformers()
    pipeline = _pipeline_of(transformers_model, task)
    if model_config is not None and not isinstance(model_config, dict):
        raise UsageError(f"model_config must be a dict, not {type(model_config).__name__}")
    conf = flavor_config(pipeline, torch_dtype)
    has_pyfunc = pipeline.task in PYFUNC_TASKS
    if signature is None and input_example is None and has_pyfunc:
        signature = _default_signature(pipeline.task)

    def write(staging: Path, model: Model, code_dir: str | None) -> None:
        pipeline.model.save_pretrained(staging / MODEL_BINARY)
        for name in conf["components"]:
            getattr(pipeline, name).save_pretrained(staging / COMPONENTS_DIR / name)
        readable_by_all(staging)
        if has_pyfunc:
            pyfunc_conf: dict[str, Any] = {"loader_module": LOADER_MODULE}
            if code_dir:
                pyfunc_conf["code"] = code_dir
            if model_config:
                pyfunc_conf["config"] = dict(model_config)
            model.add_flavor("python_function", **pyfunc_conf)
        model.add_flavor(
            FLAVOR_NAME, transformers_version=transformers.__version__, code=code_dir, **conf
        )

    return save_model_directory(
        path,
        FlavorWriter(
            write=write,
            default_requirements=lambda: [
                f"envkit=={__version__}",
                *get_default_pip_requirements(pipeline.model),
            ],
            pyfunc_impl=lambda staging: TransformersWrapper(pipeline, conf, model_config),
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
    transformers_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Save ``transformers_model`` into the active run (see :func:`envkit.start_run`)."""
    from envkit.pyfunc.flavor_kit import log_flavor_model

    return log_flavor_model(
        __name__, artifact_path, name, transformers_model=transformers_model, **kwargs
    )


def _library_class(transformers: Any, name: object, fallback: str | None, what: str) -> Any:
    """The transformers class ``name`` (``fallback``, an Auto class, when transformers has no
    such class: a model saved with custom code, whose code envkit does not run)."""
    from envkit.errors import ModelFormatError

    cls = getattr(transformers, str(name), None) if name else None
    if cls is None and fallback:
        cls = getattr(transformers, fallback)
    if cls is None:
        raise ModelFormatError(
            f"the model's {what} class {name!r} is not in transformers {transformers.__version__}"
            " (custom model code is not loaded)"
        )
    return cls


def _dtype(value: Any) -> Any:
    import torch

    from envkit.errors import ModelFormatError

    dtype = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ModelFormatError(f"the flavor's torch_dtype {value!r} is not a torch dtype")
    return dtype


def _model_files(model_dir: Path, conf: dict[str, Any]) -> Path:
    """The directory of the saved weights (``model`` or, before MLflow 2.4.1, ``pipeline``)."""
    from envkit._fs import resolve_inside
    from envkit.errors import ModelFormatError

    if "model_binary" not in conf and conf.get("source_model_revision"):
        raise ModelFormatError(
            "the model was saved without its weights (save_pretrained=False: they are on the "
            f"Hugging Face Hub as {conf.get('source_model_name')!r}); envkit loads saved weights "
            "only: save the model again with its weights"
        )
    weights = resolve_inside(model_dir, str(conf.get("model_binary") or "pipeline"))
    if not weights.is_dir():
        raise ModelFormatError(f"the model's weights directory {weights.name} is missing")
    return weights


def load_components(
    model_dir: Path, conf: dict[str, Any], device: Any = None, **kwargs: Any
) -> dict[str, Any]:
    """The arguments of ``transformers.pipeline`` for the saved model: ``task``, ``model``
    (in the recorded ``torch_dtype``), its components and ``device``."""
    from envkit._fs import resolve_inside
    from envkit.errors import ModelFormatError

    transformers = _transformers()
    if not conf.get("task"):
        raise ModelFormatError("the transformers flavor section has no task")
    parts: dict[str, Any] = {"task": conf["task"]}
    load: dict[str, Any] = {}
    if conf.get("torch_dtype") and "dtype" not in kwargs:
        load["dtype"] = _dtype(conf["torch_dtype"])
    model_class = _library_class(transformers, conf.get("pipeline_model_type"), None, "model")
    parts["model"] = model_class.from_pretrained(str(_model_files(model_dir, conf)), **load)
    components = list(conf.get("components") or [])
    if conf.get("processor_type"):
        components.append("processor")
    for name in components:
        auto = _AUTO_COMPONENTS.get(name, "AutoProcessor")
        cls = _library_class(transformers, conf.get(f"{name}_type"), auto, str(name))
        folder = resolve_inside(model_dir, f"{COMPONENTS_DIR}/{name}")
        parts[str(name)] = cls.from_pretrained(str(folder))
    if device is not None:
        parts["device"] = device
    return {**parts, **kwargs}


def load_model(
    model_uri: str | os.PathLike[str],
    return_type: str = "pipeline",
    device: Any = None,
    **kwargs: Any,
) -> Any:
    """Load the saved pipeline (``return_type="pipeline"``) or the dict of its parts
    (``"components"``: task, model, tokenizer...), as ``mlflow.transformers.load_model``;
    ``kwargs`` go to ``transformers.pipeline``."""
    from envkit.errors import UsageError
    from envkit.pyfunc.flavor_kit import open_flavor

    if return_type not in ("pipeline", "components"):
        raise UsageError(f"return_type must be 'pipeline' or 'components', not {return_type!r}")
    opened = open_flavor(model_uri, FLAVOR_NAME)
    parts = load_components(opened.path, opened.conf, device, **kwargs)
    if return_type == "components":
        return parts
    return _transformers().pipeline(**parts)


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> Any:
    """Loader contract (also for models MLflow wrote with ``mlflow.transformers``): ``path``
    is the model directory. ``model_config`` is the python_function section's ``config``
    (or the ``components/inference_config.txt`` of older MLflow models)."""
    import json

    from envkit.pyfunc.flavor_kit import pyfunc_flavor_directory
    from envkit.transformers._pyfunc import TransformersWrapper

    opened = pyfunc_flavor_directory(path, FLAVOR_NAME)
    legacy = opened.path / COMPONENTS_DIR / "inference_config.txt"
    if legacy.is_file():
        model_config = json.loads(legacy.read_text())
    from envkit.models.model import Model

    template = (Model.load(opened.path).metadata or {}).get("prompt_template")
    pipeline = _transformers().pipeline(**load_components(opened.path, opened.conf))
    return TransformersWrapper(pipeline, opened.conf, model_config, template)
