"""The MLmodel file: :class:`Model`, :class:`ModelInfo` and :func:`get_model_info`.

Field names and layout follow MLflow's ``MLmodel`` (see ``shared/reference/samples``). Fields
envkit does not know are kept on load and written back on save.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from envkit._version import __version__
from envkit.errors import ModelFormatError

if TYPE_CHECKING:
    from envkit.models.signature import ModelSignature

MLMODEL_FILE_NAME = "MLmodel"
# An MLmodel larger than this is refused (it holds metadata; MLflow's are a few kB).
MAX_MLMODEL_BYTES = 4 * 1024 * 1024
MAX_MLMODEL_BYTES_VAR = "ENVKIT_MAX_MLMODEL_BYTES"
METADATA_DIR = "metadata"

# Fields with a meaning to envkit; anything else in an MLmodel file is carried through as-is.
_KNOWN_FIELDS = (
    "artifact_path",
    "run_id",
    "utc_time_created",
    "flavors",
    "signature",
    "is_signature_from_type_hint",
    "type_hint_from_example",
    "saved_input_example_info",
    "model_uuid",
    "model_id",
    "model_size_bytes",
    "metadata",
    "mlflow_version",
    "envkit_version",
    "prompts",
    "env_vars",
)


def _utc_now() -> str:
    # MLflow writes a naive UTC timestamp: '2026-11-25 03:02:31.908560'.
    return str(datetime.now(timezone.utc).replace(tzinfo=None))


class Model:
    """An MLflow Model's ``MLmodel`` description: its flavors and metadata."""

    def __init__(
        self,
        artifact_path: str | None = None,
        run_id: str | None = None,
        utc_time_created: str | None = None,
        flavors: dict[str, dict[str, Any]] | None = None,
        signature: ModelSignature | None = None,
        saved_input_example_info: dict[str, Any] | None = None,
        model_uuid: str | None = None,
        model_id: str | None = None,
        model_size_bytes: int | None = None,
        metadata: dict[str, Any] | None = None,
        mlflow_version: str | None = None,
        envkit_version: str | None = __version__,
        prompts: list[str] | None = None,
        env_vars: list[str] | None = None,
        **extra: Any,
    ) -> None:
        self.artifact_path = artifact_path
        self.run_id = run_id
        self.utc_time_created = str(utc_time_created or _utc_now())
        self.flavors: dict[str, dict[str, Any]] = dict(flavors or {})
        self._signature: ModelSignature | None = signature
        self._signature_dict: dict[str, Any] | None = None
        self.is_signature_from_type_hint = False
        self.type_hint_from_example = False
        self.saved_input_example_info = saved_input_example_info
        self.model_uuid = model_uuid if model_uuid is not None else uuid.uuid4().hex
        self.model_id = model_id
        self.model_size_bytes = model_size_bytes
        self.metadata = metadata
        self.mlflow_version = mlflow_version
        self.envkit_version = envkit_version
        self.prompts = prompts
        self.env_vars = env_vars
        # Fields this object filled in because the MLmodel it was read from had none.
        self.invented_fields: frozenset[str] = frozenset()
        self.extra: dict[str, Any] = dict(extra)

    # -- flavors ---------------------------------------------------------------------------------

    def add_flavor(self, name: str, **params: Any) -> Model:
        """Add (or replace) flavor ``name`` with its configuration; returns ``self``."""
        self.flavors[name] = params
        return self

    def get_flavor(self, name: str) -> dict[str, Any]:
        """The configuration of flavor ``name``; a clear error if the model does not have it."""
        conf = self.flavors.get(name)
        if conf is None:
            have = ", ".join(sorted(self.flavors)) or "none"
            raise ModelFormatError(f"the model has no {name!r} flavor (its flavors: {have})")
        if not isinstance(conf, dict):
            raise ModelFormatError(f"flavor {name!r} in MLmodel is not a mapping")
        return conf

    # -- signature -------------------------------------------------------------------------------

    @property
    def signature(self) -> ModelSignature | None:
        """The model signature, parsed on first access."""
        if self._signature is None and self._signature_dict is not None:
            from envkit.models.signature import ModelSignature

            try:
                self._signature = ModelSignature.from_dict(self._signature_dict)
            except Exception as exc:
                raise ModelFormatError(f"the signature in MLmodel cannot be read: {exc}") from exc
            self._signature._is_signature_from_type_hint = self.is_signature_from_type_hint
            self._signature._is_type_hint_from_example = self.type_hint_from_example
        return self._signature

    @signature.setter
    def signature(self, value: ModelSignature | None) -> None:
        self._signature = value
        self._signature_dict = None
        if value is not None:
            self.is_signature_from_type_hint = bool(
                getattr(value, "_is_signature_from_type_hint", False)
            )
            self.type_hint_from_example = bool(getattr(value, "_is_type_hint_from_example", False))

    def get_input_schema(self) -> Any:
        return self.signature.inputs if self.signature is not None else None

    def get_output_schema(self) -> Any:
        return self.signature.outputs if self.signature is not None else None

    def get_params_schema(self) -> Any:
        return getattr(self.signature, "params", None) if self.signature is not None else None

    # -- serialization ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The MLmodel content as a plain dictionary (what MLflow writes, plus envkit_version)."""
        res: dict[str, Any] = copy.deepcopy(self.extra)
        if self.artifact_path is not None:
            res["artifact_path"] = self.artifact_path
        if self.run_id is not None:
            res["run_id"] = self.run_id
        res["utc_time_created"] = self.utc_time_created
        res["flavors"] = copy.deepcopy(self.flavors)
        if self._signature is not None:
            res["signature"] = self._signature.to_dict()
        elif self._signature_dict is not None:
            res["signature"] = copy.deepcopy(self._signature_dict)
        if "signature" in res:
            res["is_signature_from_type_hint"] = self.is_signature_from_type_hint
            res["type_hint_from_example"] = self.type_hint_from_example
        if self.saved_input_example_info is not None:
            res["saved_input_example_info"] = copy.deepcopy(self.saved_input_example_info)
        res["model_uuid"] = self.model_uuid
        res["model_id"] = self.model_id
        if self.model_size_bytes is not None:
            res["model_size_bytes"] = self.model_size_bytes
        if self.metadata is not None:
            res["metadata"] = copy.deepcopy(self.metadata)
        if self.mlflow_version is not None:
            res["mlflow_version"] = self.mlflow_version
        if self.envkit_version is not None:
            res["envkit_version"] = self.envkit_version
        res["prompts"] = self.prompts
        if self.env_vars is not None:
            res["env_vars"] = list(self.env_vars)
        return res

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), default_flow_style=False)

    def __str__(self) -> str:
        return self.to_yaml()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and self.to_dict() == other.to_dict()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the MLmodel file to ``path`` (a file path, or a directory to write it into)."""
        from envkit._fs import atomic_write_text

        target = Path(path)
        if target.is_dir():
            target = target / MLMODEL_FILE_NAME
        atomic_write_text(target, self.to_yaml())

    @classmethod
    def from_dict(cls, model_dict: Mapping[str, Any]) -> Model:
        """Build a Model from a parsed MLmodel mapping; unknown fields are kept."""
        if not isinstance(model_dict, Mapping):
            raise ModelFormatError(
                f"MLmodel must be a YAML mapping, got {type(model_dict).__name__}"
            )
        data = dict(model_dict)
        flavors = data.pop("flavors", None)
        if flavors is None:
            raise ModelFormatError("MLmodel has no 'flavors' section; this is not an MLflow Model")
        if not isinstance(flavors, Mapping) or not all(
            isinstance(conf, Mapping) for conf in flavors.values()
        ):
            raise ModelFormatError("'flavors' in MLmodel must map each flavor name to a mapping")
        signature = data.pop("signature", None)
        from_hint = bool(data.pop("is_signature_from_type_hint", False))
        from_example = bool(data.pop("type_hint_from_example", False))
        known = {k: data.pop(k) for k in list(data) if k in _KNOWN_FIELDS}
        for name in ("saved_input_example_info", "metadata"):
            if known.get(name) is not None and not isinstance(known[name], Mapping):
                raise ModelFormatError(
                    f"'{name}' in MLmodel must be a mapping, got {type(known[name]).__name__}"
                )
        # Model() fills a missing creation time and uuid (as MLflow does); remember which were
        # not in the file, so that what describes the file never shows an invented value.
        invented = frozenset(
            name for name in ("utc_time_created", "model_uuid") if not known.get(name)
        )
        model = cls(
            flavors={str(k): dict(v) for k, v in flavors.items()},
            envkit_version=known.pop("envkit_version", None),
            model_uuid=known.pop("model_uuid", None) or uuid.uuid4().hex,
            **known,
            **{str(k): v for k, v in data.items()},
        )
        if signature is not None:
            if not isinstance(signature, Mapping):
                raise ModelFormatError("'signature' in MLmodel must be a mapping")
            model._signature_dict = dict(signature)
        model.is_signature_from_type_hint = from_hint
        model.type_hint_from_example = from_example
        model.invented_fields = invented
        return model

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        """Read a model's MLmodel file (``path`` is the file, the model directory, or a URI)."""
        from envkit.models.uri import resolve_model_uri

        path_str = os.fspath(path)
        candidate = Path(path_str)
        if candidate.name == MLMODEL_FILE_NAME and candidate.is_file():
            return cls._read(candidate)
        return cls._read(resolve_model_uri(path_str) / MLMODEL_FILE_NAME)

    @classmethod
    def _read(cls, mlmodel_path: Path) -> Model:
        from envkit._parsing import load_yaml

        if not mlmodel_path.is_file():
            raise ModelFormatError(
                f"no MLmodel file at {mlmodel_path}; is {mlmodel_path.parent} a model directory?"
            )
        try:
            size = mlmodel_path.stat().st_size
            limit = max_mlmodel_bytes()
            if size > limit:
                raise ModelFormatError(
                    f"{mlmodel_path} is {size:,} bytes, more than the {limit:,} an MLmodel may "
                    f"have; set {MAX_MLMODEL_BYTES_VAR} to read a larger one"
                )
            text = mlmodel_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"cannot read {mlmodel_path}: {exc}") from exc
        try:
            parsed = load_yaml(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise ModelFormatError(
                f"{mlmodel_path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}"
            ) from exc
        if parsed is None:
            raise ModelFormatError(f"{mlmodel_path} is empty")
        try:
            return cls.from_dict(parsed)
        except ModelFormatError as exc:
            raise ModelFormatError(f"{mlmodel_path}: {exc.message}") from exc

    # -- logging ---------------------------------------------------------------------------------

    @classmethod
    def log(
        cls,
        artifact_path: str | None = None,
        flavor: Any = None,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> ModelInfo:
        """Save the model with ``flavor.save_model`` into the active run and return its info.

        ``flavor`` is a module with ``save_model(path, ..., envkit_model=Model)`` such as
        ``envkit.sklearn``. Without an active run a run is started (and ended) for this call.
        When MLflow is in use with an active run, the model goes into that run's artifacts.
        """
        from envkit.models.tracking import log_model_directory

        if flavor is None:
            raise TypeError("Model.log needs the flavor module, e.g. envkit.sklearn")
        return log_model_directory(cls, name or artifact_path or "model", flavor, kwargs)

    def get_model_info(self, local_path: str | os.PathLike[str] | None = None) -> ModelInfo:
        # MLflow 3 records the absolute artifact location of a logged model there, which is
        # not a name inside the run: the local path is the URI that loads it.
        run_relative = bool(self.artifact_path) and not (
            os.path.isabs(str(self.artifact_path)) or "://" in str(self.artifact_path)
        )
        model_uri = (
            f"runs:/{self.run_id}/{self.artifact_path}"
            if self.run_id and run_relative
            else (os.fspath(local_path) if local_path is not None else "")
        )
        return ModelInfo(
            artifact_path=self.artifact_path,
            flavors=copy.deepcopy(self.flavors),
            model_uri=model_uri,
            model_uuid=self.model_uuid,
            run_id=self.run_id,
            saved_input_example_info=self.saved_input_example_info,
            signature=self.signature,
            utc_time_created=self.utc_time_created,
            envkit_version=self.envkit_version,
            mlflow_version=self.mlflow_version,
            metadata=self.metadata,
            model_size_bytes=self.model_size_bytes,
            env_vars=self.env_vars,
            local_path=os.fspath(local_path) if local_path is not None else None,
        )


@dataclass
class ModelInfo:
    """What a logged or saved model is: where to load it from and what it records."""

    artifact_path: str | None
    flavors: dict[str, dict[str, Any]]
    model_uri: str
    model_uuid: str
    run_id: str | None
    saved_input_example_info: dict[str, Any] | None
    signature: Any
    utc_time_created: str
    envkit_version: str | None
    mlflow_version: str | None = None
    metadata: dict[str, Any] | None = None
    model_size_bytes: int | None = None
    env_vars: list[str] | None = None
    local_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def get_model_info(model_uri: str | os.PathLike[str]) -> ModelInfo:
    """The :class:`ModelInfo` of the model at ``model_uri`` (a path or ``runs:/<id>/<name>``)."""
    from envkit.models.uri import resolve_model_uri

    local = resolve_model_uri(os.fspath(model_uri))
    model = Model._read(local / MLMODEL_FILE_NAME)
    info = model.get_model_info(local)
    if str(model_uri).startswith("runs:/"):
        info.model_uri = str(model_uri)
    return info


# Flavor keys that name a file or directory inside the model.
_PATH_KEYS = ("model_path", "pickled_model", "python_model", "data", "model_data", "code")


def check_recorded_paths(
    model_dir: Path, model: Model, *, need_files: bool = True, need_input_example: bool = True
) -> None:
    """Every path MLmodel records stays inside ``model_dir`` (no absolute path, no ``..``, no
    symlink out): :class:`~envkit.errors.UnsafePathError` otherwise. With ``need_files``, the
    python_function flavor's files must exist too (:class:`ModelFormatError`); with
    ``need_input_example``, the input example file it names."""
    from envkit._fs import resolve_inside

    def inside(value: Any, what: str, *, must_exist: bool) -> None:
        if not isinstance(value, str) or not value:
            return
        path = resolve_inside(model_dir, value)
        if must_exist and not path.exists():
            raise ModelFormatError(
                f"the model's {what} is {value!r}, which is missing from {model_dir}"
            )

    for name, conf in model.flavors.items():
        pyfunc_flavor = name == "python_function" and need_files
        for key in _PATH_KEYS:
            inside(conf.get(key), f"{name}.{key}", must_exist=pyfunc_flavor)
        artifacts = conf.get("artifacts")
        if isinstance(artifacts, Mapping):
            for artifact, info in artifacts.items():
                if isinstance(info, Mapping):
                    inside(
                        info.get("path"), f"{name} artifact {artifact!r}", must_exist=pyfunc_flavor
                    )
        env = conf.get("env")
        if isinstance(env, Mapping):
            for manager, file_name in env.items():
                inside(file_name, f"{name}.env.{manager}", must_exist=False)
        code_file = conf.get("model_code_path")
        if name == "python_function" and isinstance(code_file, str) and code_file:
            # MLflow records where the file was when saved; the model holds it by its name.
            inside(os.path.basename(code_file), f"{name}.model_code_path", must_exist=need_files)
    info = model.saved_input_example_info
    if isinstance(info, Mapping):
        inside(info.get("serving_input_path"), "serving input example", must_exist=False)
        inside(info.get("artifact_path"), "input example", must_exist=need_input_example)


def max_mlmodel_bytes() -> int:
    """The largest MLmodel envkit reads: ``$ENVKIT_MAX_MLMODEL_BYTES``, else 4 MiB."""
    raw = os.environ.get(MAX_MLMODEL_BYTES_VAR, "").strip()
    if not raw:
        return MAX_MLMODEL_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        from envkit.errors import UsageError

        raise UsageError(f"{MAX_MLMODEL_BYTES_VAR}={raw!r} is not a positive number of bytes")
    return value
