"""Scanning a model's pickles before anything loads them.

Unpickling runs code: a pickle names the globals (functions, classes) it calls while it is read,
and one that names ``os.system`` runs a command. :func:`scan_model` lists the globals every
pickle-based file of a model references (pickle, cloudpickle and joblib files: ``model.pkl``,
``python_model.pkl``, artifacts, and the ``*.pkl`` members of zip archives: torch's
``model.pth``), without loading any of them, using picklescan's disassembler
and blocklist (imported lazily: ``import envkit`` stays light). :func:`ensure_safe` refuses a
model that references a dangerous global (:class:`~envkit.errors.UnsafeModelError`, exit code 1)
unless the caller trusts the model, or the global (``trusted_types``).

Globals are classified as
    dangerous  they run commands, code, file or network access (picklescan's blocklist and a few
               more), unless listed in ``trusted_types``;
    safe       the data types of the standard library, numpy, pandas, scipy, scikit-learn and
               envkit, and cloudpickle's internals for classes and functions pickled by value
               (so that envkit's own cloudpickled PythonModels load without trusting them);
    unknown    anything else (a model's own classes): reported by ``envkit scan``, not refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickletools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.errors import EXIT_BAD_INPUT, EXIT_MODEL_FAILED, EXIT_OK, ModelFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "ENV_STRICT_SCAN",
    "ENV_TRUSTED_TYPES",
    "ENV_TRUST_MODEL",
    "FileScan",
    "ModelScan",
    "ModelTrust",
    "ensure_safe",
    "scan_model",
]

# How a trust decision made on the host reaches the model's own process (the sandbox runner,
# the scoring server), which loads the model with envkit.pyfunc.load_model and scans it again.
ENV_TRUST_MODEL = "ENVKIT_TRUST_MODEL"
ENV_TRUSTED_TYPES = "ENVKIT_TRUSTED_TYPES"
ENV_STRICT_SCAN = "ENVKIT_STRICT_SCAN"

PICKLE_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".pck", ".cloudpickle", ".joblib", ".jbl", ".sav", ".dat", ".data"}
)
# Pickles of protocol 2 and later start with PROTO and the protocol number.
_PICKLE_MAGIC = frozenset(bytes([0x80, n]) for n in range(2, 6))
# A zip archive (torch.save's format since torch 1.6: ``<name>/data.pkl`` beside the raw
# tensor data, whatever the file's suffix: model.pth, .pt, .bin...); its *.pkl members are the
# pickles torch.load unpickles.
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_PICKLE_SUFFIX = ".pkl"
# A member is read into memory to be scanned: a bigger one (a zip bomb's) is not read.
MAX_ZIP_MEMBER_BYTES = 1 << 30

_CLOUDPICKLE_INTERNALS = frozenset(
    {
        "_builtin_type",
        "_class_getnewargs",
        "_class_setstate",
        "_enum_getnewargs",
        "_enum_setstate",
        "_function_setstate",
        "_get_dump",
        "_make_cell",
        "_make_dict_items",
        "_make_dict_keys",
        "_make_dict_values",
        "_make_empty_cell",
        "_make_function",
        "_make_skeleton_class",
        "_make_skeleton_enum",
        "_make_typevar",
        "dynamic_subimport",
        "subimport",
    }
)
_CLOUDPICKLE_MODULES = ("cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast")

# Blocked beyond picklescan's list: they import modules, reach attributes or build functions.
_MORE_DANGEROUS: Mapping[str, frozenset[str] | None] = {
    "builtins": frozenset(
        {"__import__", "globals", "locals", "vars", "setattr", "delattr", "input", "help"}
    ),
    "__builtin__": frozenset({"__import__", "globals", "locals", "vars", "setattr", "delattr"}),
    "importlib": None,
    "marshal": None,
    "multiprocessing": None,
    "platform": None,
    "tempfile": None,
    "types": frozenset({"FunctionType", "CodeType", "ModuleType"}),
    "io": frozenset({"FileIO", "open", "open_code"}),
    "http": None,
    "urllib": None,
    "ftplib": None,
    "smtplib": None,
    "telnetlib": None,
    "signal": None,
}

# Whole packages whose globals are data types or estimators, not commands.
_SAFE_PACKAGES = frozenset(
    {"sklearn", "numpy", "scipy", "pandas", "envkit", "cloudpickle", "collections", "copyreg",
     "datetime", "decimal", "fractions", "uuid_", "enum", "re", "pathlib", "zoneinfo", "_codecs",
     "array", "threadpoolctl", "joblib"}
)  # fmt: skip
_SAFE_BUILTINS = frozenset(
    {"object", "set", "frozenset", "slice", "complex", "bytearray", "bytes", "dict", "list",
     "tuple", "int", "float", "bool", "str", "range", "type", "property", "staticmethod",
     "classmethod", "Ellipsis", "NotImplemented", "len", "print", "super", "isinstance", "map",
     "zip", "filter", "sorted", "min", "max", "sum", "abs", "round", "ValueError",
     "TypeError", "KeyError", "Exception"}
)  # fmt: skip


@dataclass(frozen=True)
class ModelTrust:
    """What the caller vouches for: the whole model (no scan), or some globals by name
    (``"module.name"``; ``"mypkg.*"`` for a whole package). ``strict`` refuses every global
    that is neither on envkit's safe list nor listed (as skops does): a model's own classes
    then load only when named."""

    trust_model: bool = False
    trusted_types: tuple[str, ...] = ()
    strict: bool = False

    @classmethod
    def of(
        cls,
        trust_model: bool | None = None,
        trusted_types: Iterable[str] | None = None,
        strict: bool | None = None,
    ) -> ModelTrust:
        """From the keywords of a public function; ``None`` reads ``ENVKIT_TRUST_MODEL`` /
        ``ENVKIT_TRUSTED_TYPES`` (comma-separated) / ``ENVKIT_STRICT_SCAN``, which envkit
        sets for the model's process (and ``--strict-scan`` for its own)."""
        if trust_model:
            return cls(True, tuple(trusted_types or ()))
        if trust_model is None:
            trust_model = _env_switch(ENV_TRUST_MODEL)
        if trusted_types is None:
            raw = os.environ.get(ENV_TRUSTED_TYPES, "")
            trusted_types = [t for t in (part.strip() for part in raw.split(",")) if t]
        if isinstance(trusted_types, str):
            trusted_types = [trusted_types]
        if strict is None:
            strict = _env_switch(ENV_STRICT_SCAN)
        return cls(bool(trust_model), tuple(trusted_types), bool(strict))

    def environment(self) -> dict[str, str]:
        """The variables that carry this trust to the model's own process."""
        env: dict[str, str] = {}
        if self.trust_model:
            env[ENV_TRUST_MODEL] = "1"
        if self.trusted_types:
            env[ENV_TRUSTED_TYPES] = ",".join(self.trusted_types)
        if self.strict:
            env[ENV_STRICT_SCAN] = "1"
        return env

    def trusts(self, qualified: str) -> bool:
        return any(
            qualified == t or (t.endswith(".*") and qualified.startswith(t[:-1]))
            for t in self.trusted_types
        )


def _env_switch(name: str) -> bool:
    """A boolean variable as envkit reads them all (true/false, 1/0, yes/no; any case)."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "false", "0", "no"):
        return False
    if value in ("true", "1", "yes"):
        return True
    from envkit.errors import UsageError

    raise UsageError(f"{name} must be true or false (or 1/0, yes/no); unset it for the default")


@dataclass
class FileScan:
    """The globals one file references, by verdict (each ``"module.name"``)."""

    path: str  # relative to the model directory, with forward slashes
    dangerous: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    safe: list[str] = field(default_factory=list)
    error: str | None = None  # why the file could not be read as a pickle
    partial: bool = False  # parsing stopped early (joblib's inline arrays, or a corrupt file)

    @property
    def verdict(self) -> str:
        """``dangerous``, ``unreadable``, ``unknown`` or ``safe``."""
        if self.dangerous:
            return "dangerous"
        if self.error is not None:
            return "unreadable"
        return "unknown" if self.unknown else "safe"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "verdict": self.verdict,
            "dangerous": self.dangerous,
            "unknown": self.unknown,
            "safe": self.safe,
        }
        if self.error is not None:
            data["error"] = self.error
        if self.partial:
            data["partial"] = True
        return data


@dataclass
class ModelScan:
    """Every pickle-based file of a model and what it references."""

    model: str
    files: list[FileScan]
    scanner: str
    strict: bool = False  # unknown globals count as refused

    @property
    def dangerous(self) -> list[FileScan]:
        return [f for f in self.files if f.dangerous]

    @property
    def verdict(self) -> str:
        """The worst verdict of any file (``safe`` for a model without pickles)."""
        for verdict in ("dangerous", "unreadable", "unknown"):
            if any(f.verdict == verdict for f in self.files):
                return verdict
        return "safe"

    @property
    def exit_code(self) -> int:
        """0 safe (unknown globals included unless strict), 1 dangerous (or unknown, strict),
        2 unreadable."""
        codes = {"dangerous": EXIT_MODEL_FAILED, "unreadable": EXIT_BAD_INPUT}
        if self.strict:
            codes["unknown"] = EXIT_MODEL_FAILED
        return codes.get(self.verdict, EXIT_OK)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "verdict": self.verdict,
            "strict": self.strict,
            "scanner": self.scanner,
            "files": [f.to_dict() for f in self.files],
        }


def pickle_files(model_dir: Path) -> Iterator[Path]:
    """The model's files that are pickles: by suffix, or starting like one (symlinks are not
    followed; the loaders refuse links that leave the model)."""
    for root, dirs, names in os.walk(model_dir):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            if path.suffix.lower() in PICKLE_SUFFIXES:
                yield path
                continue
            try:
                with open(path, "rb") as handle:
                    head = handle.read(2)
            except OSError:
                continue
            if head in _PICKLE_MAGIC:
                yield path


def zip_files(model_dir: Path) -> Iterator[Path]:
    """The model's files that are zip archives (by their first bytes: torch names its files
    freely), symlinks not followed."""
    for root, dirs, names in os.walk(model_dir):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                with open(path, "rb") as handle:
                    head = handle.read(len(_ZIP_MAGIC))
            except OSError:
                continue
            if head == _ZIP_MAGIC:
                yield path


def scan_zip_members(path: Path, relative: str, trust: ModelTrust) -> list[FileScan]:
    """A scan of each ``*.pkl`` member of the zip archive ``path`` (torch's ``data.pkl``), and of
    those of the zip archives inside it (the ``sample_inputs/model.pt`` of a ``torch.export``
    archive), each named ``<file>:<member>``, and of a Keras archive's config
    (:func:`scan_keras_config`); none for an archive without either. An archive that cannot be
    read is one unreadable file."""
    import io
    import zipfile

    from picklescan.scanner import SafetyLevel, scan_pickle_bytes

    try:
        with zipfile.ZipFile(path) as archive:
            payloads = _zip_pickles(archive, relative, depth=2)
            keras = scan_keras_config(archive, relative, trust)
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError) as exc:
        return [FileScan(relative, error=f"not a readable zip archive ({exc})")]
    pickles = [
        _scan_stream(io.BytesIO(data), where, trust, scan_pickle_bytes, SafetyLevel)
        for where, data in payloads
    ]
    return pickles + keras


# A Keras 3 ``.keras`` file (a zip: config.json, metadata.json, model.weights.h5) carries no
# pickle, but a Lambda layer built from a Python lambda keeps its marshalled bytecode in the
# config (``{"class_name": "__lambda__", "config": {"code": ...}}``), run when it is loaded:
# Keras' safe_mode refuses it, and the scan reports it as this dangerous global.
KERAS_LAMBDA = "keras.layers.Lambda"
_KERAS_CONFIG = "config.json"
_KERAS_MARKERS = frozenset({"config.json", "metadata.json"})


def scan_keras_config(archive: Any, relative: str, trust: ModelTrust) -> list[FileScan]:
    """A scan of the config of the open zip ``archive`` when it is a Keras archive
    (``<file>:config.json``): :data:`KERAS_LAMBDA` for a layer holding Python bytecode; none
    for another archive."""
    if not set(archive.namelist()) >= _KERAS_MARKERS:
        return []
    where = f"{relative}:{_KERAS_CONFIG}"
    info = archive.getinfo(_KERAS_CONFIG)
    if info.file_size > MAX_ZIP_MEMBER_BYTES:
        return [FileScan(where, error=f"{info.file_size} bytes uncompressed: not read")]
    try:
        config = json.loads(archive.read(info))
    except ValueError as exc:
        return [FileScan(where, error=f"not a readable Keras config ({exc})")]
    result = FileScan(where)
    if _has_python_lambda(config):
        verdict = "safe" if trust.trusts(KERAS_LAMBDA) else "dangerous"
        getattr(result, verdict).append(KERAS_LAMBDA)
    return [result]


def _has_python_lambda(node: Any) -> bool:
    """Whether a Keras config holds a ``__lambda__`` (Python bytecode) anywhere."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "__lambda__":
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _zip_pickles(archive: Any, where: str, depth: int) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of the ``*.pkl`` members of ``archive``, and, ``depth`` levels down,
    of the zip archives it holds."""
    import io
    import zipfile

    found: list[tuple[str, bytes]] = []
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = f"{where}:{info.filename}"
        is_pickle = info.filename.lower().endswith(_ZIP_PICKLE_SUFFIX)
        if (is_pickle or depth > 0) and info.file_size > MAX_ZIP_MEMBER_BYTES:
            if not is_pickle:
                continue  # too big to open as a nested archive: raw tensor data, say
            raise ValueError(
                f"its member {info.filename} is {info.file_size} bytes uncompressed, more than "
                f"the {MAX_ZIP_MEMBER_BYTES} envkit reads to scan"
            )
        if is_pickle:
            found.append((name, archive.read(info)))
            continue
        if depth > 0:
            with archive.open(info) as member:
                nested = member.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
            if nested:
                with zipfile.ZipFile(io.BytesIO(archive.read(info))) as inner:
                    found += _zip_pickles(inner, name, depth - 1)
    return found


def classify(module: str, name: str, flagged: bool, trust: ModelTrust) -> str:
    """``safe``, ``dangerous`` or ``unknown`` for the global ``module.name`` (``flagged``: on
    the scanner's blocklist)."""
    qualified = f"{module}.{name}"
    if trust.trusts(qualified):
        return "safe"
    if module in _CLOUDPICKLE_MODULES and name in _CLOUDPICKLE_INTERNALS:
        return "safe"
    if module == "types" and name == "CodeType":
        return "safe"  # cloudpickle's code objects of classes pickled by value
    if flagged or _more_dangerous(module, name) or "unknown" in (module, name):
        return "dangerous"
    if _torch_data(module, name):
        return "safe"
    top = module.split(".")[0]
    if top in ("builtins", "__builtin__"):
        return "safe" if name in _SAFE_BUILTINS else "unknown"
    return "safe" if top in _SAFE_PACKAGES else "unknown"


def _torch_data(module: str, name: str) -> bool:
    """What torch.save writes for a module's weights: tensors and parameters rebuilt from their
    storages, dtypes, and the layers of torch.nn (not torch as a whole: torch.load, torch.hub,
    torch.jit and the like run code)."""
    if module == "torch._utils":
        return name.startswith("_rebuild_")
    if module == "torch":
        return name.endswith("Storage") or name in ("Size", "device", "dtype", "float32")
    if module == "torch.storage":  # not _load_from_bytes: it calls torch.load
        return name in ("TypedStorage", "UntypedStorage")
    return module == "torch.nn.parameter" or module.startswith("torch.nn.modules.")


def _more_dangerous(module: str, name: str) -> bool:
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        if prefix in _MORE_DANGEROUS:
            names = _MORE_DANGEROUS[prefix]
            return names is None or (depth == len(parts) and name in names)
    return False


def scan_file(path: Path, relative: str, trust: ModelTrust) -> FileScan:
    """The globals ``path`` references, classified; the file is disassembled, never loaded."""
    try:
        from picklescan.scanner import SafetyLevel, scan_pickle_bytes
    except ModuleNotFoundError as exc:
        from envkit.errors import MissingModuleError

        raise MissingModuleError(
            "scanning the model's pickles before loading them needs picklescan (a dependency "
            "of envkit), which is not installed here: pip install picklescan (or, for a model "
            "you trust, pass trust_model=True / --trust-model)",
            module=exc.name,
        ) from exc

    try:
        with open(path, "rb") as handle:
            return _scan_stream(handle, relative, trust, scan_pickle_bytes, SafetyLevel)
    except OSError as exc:
        return FileScan(relative, error=exc.strerror or str(exc))


def _scan_stream(
    handle: Any, relative: str, trust: ModelTrust, scan_pickle_bytes: Any, level: Any
) -> FileScan:
    result = FileScan(relative)
    try:
        with _quiet_scanner():
            scanned = scan_pickle_bytes(handle, relative, multiple_pickles=True)
            if not scanned.globals:
                handle.seek(0)
                _parses(handle)
    except Exception as exc:  # not a pickle at all
        result.error = f"not a readable pickle ({type(exc).__name__}: {exc})"
        return result
    result.partial = bool(scanned.scan_err)
    for found in sorted(scanned.globals, key=lambda g: (g.module, g.name)):
        flagged = found.safety == level.Dangerous
        verdict = classify(found.module, found.name, flagged, trust)
        getattr(result, verdict).append(f"{found.module}.{found.name}")
    return result


@contextlib.contextmanager
def _quiet_scanner() -> Iterator[None]:
    """picklescan logs a warning per global on its blocklist, cloudpickle's internals included,
    which envkit accepts: the verdicts are envkit's to report."""
    scanner_logger = logging.getLogger("picklescan")
    level = scanner_logger.level
    scanner_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        scanner_logger.setLevel(level)


def _parses(handle: Any) -> None:
    """Raise if the first pickle in ``handle`` does not disassemble (picklescan only logs it)."""
    for _ in pickletools.genops(handle):
        pass


def scan_model(
    model_dir: str | os.PathLike[str], trusted_types: Iterable[str] = (), *, strict: bool = False
) -> ModelScan:
    """Scan every pickle-based file of the model at ``model_dir`` without loading any
    (``strict``: a global neither safe nor listed makes the verdict a refusal)."""
    from importlib.metadata import PackageNotFoundError, version

    root = Path(model_dir)
    if not root.is_dir():
        raise ModelFormatError(f"{root} is not a model directory")
    trust = ModelTrust(False, tuple(trusted_types))
    try:
        scanner = f"picklescan {version('picklescan')}"
    except PackageNotFoundError:
        scanner = "picklescan"
    files = [scan_file(p, p.relative_to(root).as_posix(), trust) for p in pickle_files(root)]
    for archive in zip_files(root):
        files += scan_zip_members(archive, archive.relative_to(root).as_posix(), trust)
    files += _scan_embedded(root, trust)
    return ModelScan(str(root), files, scanner, strict)


def _scan_embedded(root: Path, trust: ModelTrust) -> list[FileScan]:
    """Scans of the pickles a flavor keeps inside another format (diviner's GroupedPmdarima:
    base64 pickles in JSON), which :func:`pickle_files` cannot see: each flavor module of the
    MLmodel that defines ``embedded_pickles(model_dir, flavor_conf)`` names them, as
    ``(where, bytes)`` pairs."""
    import io

    from picklescan.scanner import SafetyLevel, scan_pickle_bytes

    return [
        _scan_stream(io.BytesIO(payload), where, trust, scan_pickle_bytes, SafetyLevel)
        for where, payload in _embedded_payloads(root)
    ]


def _embedded_payloads(root: Path) -> Iterator[tuple[str, bytes]]:
    import importlib

    from envkit.models.flavors import registered_flavors
    from envkit.models.model import MLMODEL_FILE_NAME, Model

    if not (root / MLMODEL_FILE_NAME).is_file():
        return
    try:
        flavors = Model.load(root).flavors
    except (ModelFormatError, OSError):
        return  # the model's loading says what is wrong with its MLmodel
    modules = registered_flavors()
    for name, conf in flavors.items():
        module_name = modules.get(name)
        if module_name is None or name == "python_function" or not isinstance(conf, dict):
            continue
        hook = getattr(importlib.import_module(module_name), "embedded_pickles", None)
        if callable(hook):
            yield from hook(root, conf)


def ensure_safe(model_dir: str | os.PathLike[str], trust: ModelTrust) -> ModelScan | None:
    """Scan the model unless ``trust.trust_model``; refuse it when a file references a
    dangerous global (:class:`~envkit.errors.UnsafeModelError`, exit 1). Returns the scan
    (None: trusted)."""

    if trust.trust_model:
        logger.info("%s: not scanned (the model is trusted)", model_dir)
        return None
    scan = scan_model(model_dir, trust.trusted_types, strict=trust.strict)
    _refuse_dangerous(scan)
    if trust.strict:
        _refuse_unknown(scan)
    for f in scan.files:
        # Not a pickle: the loader's own error says so (a disassembler and pickle.load read the
        # same opcodes in the same order, so nothing unpickles before the point where both stop).
        if f.error is not None:
            logger.debug("%s cannot be scanned: %s", f.path, f.error)
        if f.unknown:
            logger.info("%s references globals outside envkit's safe list: %s", f.path, f.unknown)
    return scan


def _refuse_dangerous(scan: ModelScan) -> None:
    from envkit.errors import UnsafeModelError

    bad = scan.dangerous
    if bad:
        first = bad[0]
        raise UnsafeModelError(
            f"refusing to load {first.path}: it calls {', '.join(first.dangerous)}, which can "
            "run commands or code on this machine while it is loaded; if you trust this "
            "model, pass --trust-model (trust_model=True), or --trust-type NAME "
            "(trusted_types=[...]) for a global you vouch for; envkit scan MODEL lists them",
            path=first.path,
            globals=first.dangerous,
        )


def _refuse_unknown(scan: ModelScan) -> None:
    from envkit.errors import UnsafeModelError

    unknown = [f for f in scan.files if f.unknown]
    if unknown:
        first = unknown[0]
        raise UnsafeModelError(
            f"refusing to load {first.path}: it references {', '.join(first.unknown)}, which "
            "is not on envkit's safe list (strict scan); name each global you vouch for with "
            "--trust-type NAME (trusted_types=[...]), or pass --trust-model",
            path=first.path,
            globals=first.unknown,
        )
