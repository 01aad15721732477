"""The capture subprocess: load a model (and predict on its input example), record imports.

Started by :mod:`envkit.deps.imports` on the saver's own interpreter as::

    python -B -c "<bootstrap>" request.json

The bootstrap sets ``sys.path`` to the saver's (so classes pickled by reference resolve the same
way) and calls :func:`main`. What it records:

* every module that becomes loaded while the model loads and predicts (a ``sys.modules`` diff);
* every ``import`` statement / ``importlib.import_module`` call made in that window, with the
  name of the importing module, so that a model importing a module envkit had already loaded
  (``yaml``) is still seen;
* the names (never the values) of environment variables read through ``os.environ``.

The result is JSON written to the path named in the request. This module imports only the
standard library and envkit's loading machinery, before recording starts.
"""

from __future__ import annotations

import builtins
import dis
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

from envkit.deps.envvars import redact_values as _redact


class _Recorder:
    """Records import statements, ``import_module`` calls and environment variable reads."""

    def __init__(self, record_env_vars: bool) -> None:
        self.statements: set[tuple[str, str, tuple[str, ...]]] = set()
        self.env_names: set[str] = set()
        self.record_env_vars = record_env_vars
        self._orig_import = builtins.__import__
        self._orig_import_module = importlib.import_module
        self._patched_env: list[tuple[str, Any]] = []

    def start(self) -> None:
        add = self.statements.add
        statements = self.statements
        orig_import = self._orig_import
        orig_import_module = self._orig_import_module

        def recording_import(
            name: str,
            globals: dict[str, Any] | None = None,
            locals: Any = None,
            fromlist: Any = (),
            level: int = 0,
        ) -> Any:
            if not level and name:
                importer = globals.get("__name__") if globals else None
                if (
                    type(importer) is not str
                    or not importer
                    or importer.startswith("importlib")
                    # C code importing while this very function runs (an extension module's
                    # lazy import during an import it started: matplotlib.ft2font) sees this
                    # frame's globals; the importer is the module below it, not the model.
                    or importer == __name__
                ):
                    importer = _initializing_module() or _calling_module()
                elif _is_machinery(importer) and not _is_statement(sys._getframe(1)):
                    # Not the loader's own ``import``: C code (pickle's find_class) called
                    # from envkit's (or MLflow's) loader, importing on the model's behalf.
                    importer = ON_BEHALF_OF_MODEL
                add((name, importer, tuple(fromlist) if fromlist else ()))
            return orig_import(name, globals, locals, fromlist, level)

        def recording_import_module(name: str, package: str | None = None) -> Any:
            if isinstance(name, str) and not name.startswith("."):
                caller = sys._getframe(1).f_globals.get("__name__", "")
                statements.add((name, str(caller), ()))
            return orig_import_module(name, package)

        builtins.__import__ = recording_import  # type: ignore[assignment]
        importlib.import_module = recording_import_module
        if self.record_env_vars:
            self._patch_environ()

    def _patch_environ(self) -> None:
        names = self.env_names
        cls = type(os.environ)
        orig_getitem = cls.__getitem__

        def getitem(self: Any, key: Any) -> Any:
            if isinstance(key, str):
                names.add(key)
            return orig_getitem(self, key)

        self._patched_env.append(("__getitem__", cls.__dict__.get("__getitem__")))
        cls.__getitem__ = getitem  # type: ignore[method-assign]
        # Mapping.get / __contains__ go through __getitem__; wrap them only if os overrides them.
        for attr in ("get", "__contains__"):
            original = cls.__dict__.get(attr)
            if original is None:
                continue

            def wrapped(self: Any, key: Any, *args: Any, _orig: Any = original) -> Any:
                if isinstance(key, str):
                    names.add(key)
                return _orig(self, key, *args)

            self._patched_env.append((attr, original))
            setattr(cls, attr, wrapped)

    def stop(self) -> None:
        builtins.__import__ = self._orig_import
        importlib.import_module = self._orig_import_module
        cls = type(os.environ)
        for attr, original in reversed(self._patched_env):
            if original is None:
                delattr(cls, attr)
            else:
                setattr(cls, attr, original)
        self._patched_env.clear()


ON_BEHALF_OF_MODEL = "<model>"
_IMPORT_NAME = dis.opmap["IMPORT_NAME"]


def _is_statement(frame: Any) -> bool:
    """Whether ``frame`` is executing an ``import`` statement (not a call into C)."""
    try:
        return bool(frame.f_code.co_code[frame.f_lasti] == _IMPORT_NAME)
    except (IndexError, AttributeError):
        return True


def _initializing_module() -> str | None:
    """The module the import machinery is creating or executing when C code imports.

    A compiled module (C, Cython, mypyc) that imports while it initialises does so from inside
    the import machinery, with no Python frame of its own: the module being loaded (the
    innermost ``spec``/``module`` of the machinery's frames) is the importer, not whichever
    module's code happens to be further up the stack (the model's, which imported it).
    """
    frame: Any = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not (isinstance(name, str) and name.startswith("importlib._bootstrap")):
            return None
        try:
            local = frame.f_locals
            spec = local.get("spec")
            module = local.get("module")
        except Exception:
            spec = module = None
        found = getattr(spec, "name", None) or getattr(module, "__name__", None)
        if isinstance(found, str) and found:
            return found
        frame = frame.f_back
    return None


def _calling_module() -> str:
    """The nearest module on the stack that is not the import machinery.

    Imports made from C (an extension module's initialisation) carry no globals, or those of
    ``importlib._bootstrap``; the module whose import started the extension is the importer.
    """
    frame: Any = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if isinstance(name, str) and name and not name.startswith("importlib") and name != __name__:
            return name
        frame = frame.f_back
    return ""


def _module_file(module: Any) -> str | None:
    path = getattr(module, "__file__", None)
    if path:
        return str(path)
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) if spec is not None else None
    if origin and origin not in ("built-in", "frozen", "namespace"):
        return str(origin)
    return None


def _is_envkit(name: str) -> bool:
    return name == "envkit" or name.startswith("envkit.")


# Top-level packages of the loading machinery: what they import while loading is theirs, not the
# model's. MLflow joins when the model's loader is MLflow's (a cloudpickled
# mlflow.pyfunc.PythonModel, a flavor envkit does not know): the model needs MLflow itself
# (recorded by the framework's default requirements), not what MLflow happens to import.
_MACHINERY = {"envkit"}


def _is_machinery(name: str) -> bool:
    return name.partition(".")[0] in _MACHINERY


def _preload_mlflow_loader(model_dir: str) -> None:
    """Import MLflow's pyfunc machinery before recording when the model's loader is MLflow's."""
    from envkit.models.flavors import envkit_loader_for
    from envkit.models.model import Model

    try:
        conf = Model.load(model_dir).flavors.get("python_function") or {}
        loader = envkit_loader_for(str(conf.get("loader_module") or ""))
    except Exception:
        return  # the load reports it, recorded
    if loader.startswith("mlflow.") or loader == "envkit.pyfunc.mlflow_compat":
        try:
            importlib.import_module("mlflow.pyfunc")
        except Exception:
            return  # not installed: the loader says what to install
        _MACHINERY.add("mlflow")


def _stdlib_top_names() -> frozenset[str]:
    names = set(sys.builtin_module_names)
    names.update(getattr(sys, "stdlib_module_names", ()))
    return frozenset(names)


def _error_text(exc: BaseException, env_names: set[str]) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return _redact(text[:500], env_names)


def collect(
    baseline: set[str], recorder: _Recorder
) -> tuple[dict[str, str | None], list[tuple[str, str]]]:
    """(module -> file, import edges) for what the model needed.

    ``baseline``: modules loaded (by envkit's own machinery) when recording started. Standard
    library modules, envkit's own modules and imports within one top-level package are left out.
    """
    modules = sys.modules
    stdlib = _stdlib_top_names()

    def wanted(name: str) -> bool:
        top = name.partition(".")[0]
        return not (top in stdlib or _is_envkit(name) or name not in modules)

    names: set[str] = {name for name in list(modules) if name not in baseline and wanted(name)}
    edges: set[tuple[str, str]] = set()
    importers: set[str] = set()
    for name, importer, fromlist in recorder.statements:
        if _is_machinery(importer) and name in baseline:
            continue  # the loader importing its own (already loaded) dependencies
        targets = [name]
        targets.extend(f"{name}.{item}" for item in fromlist if item != "*")
        for target in targets:
            if not wanted(target):
                continue
            names.add(target)
            if importer.partition(".")[0] != target.partition(".")[0]:
                edges.add((importer, target))
                importers.add(importer)
    files: dict[str, str | None] = {}
    for name in names | importers:
        module = modules.get(name)
        if module is not None and not _is_envkit(name):
            top = name.partition(".")[0]
            files[name] = None if top in stdlib else _module_file(module)
    return files, sorted(edges)


def main(request: dict[str, Any]) -> int:
    started = time.perf_counter()
    out_path = request["output"]
    result: dict[str, Any] = {"ok": False}

    def finish(code: int) -> int:
        result["seconds"] = round(time.perf_counter() - started, 3)
        with open(out_path, "w", encoding="utf-8") as handle:
            json.dump(result, handle)
        return code

    # envkit's own loading machinery first: what it imports is not the model's requirement.
    # (The loader is named by the request, as MLmodel names a loader_module: the capture, in
    # the deps layer, imports nothing of the flavor layer above it.)
    import importlib

    module_name, _, function = str(request["loader"]).partition(":")
    load_model = getattr(importlib.import_module(module_name), function)

    model_dir = request["model_dir"]
    _preload_mlflow_loader(model_dir)
    baseline = set(sys.modules)
    example_info = request.get("input_example_info")
    recorder = _Recorder(bool(request.get("record_env_vars", True)))
    recorder.start()
    try:
        # No pickle scan here: at save the model is the caller's own object, and `envkit infer`
        # scanned the model on the host before starting this process.
        trust = {"trust_model": True} if module_name.startswith("envkit.") else {}
        loaded = load_model(model_dir, suppress_warnings=True, **trust)
    except BaseException as exc:
        recorder.stop()
        result["error"] = _error_text(exc, recorder.env_names)
        result["traceback"] = _redact(traceback.format_exc()[-4000:], recorder.env_names)
        return finish(3)
    if example_info:
        # The input example is what the model is served: what reading it needs, it needs.
        try:
            from envkit.models.input_example import load_input_example

            example = load_input_example(model_dir, example_info)
        except Exception as exc:
            result["predict_error"] = "reading the input example failed: " + _error_text(
                exc, recorder.env_names
            )
        else:
            try:
                output = loaded.predict(example)
                if hasattr(output, "__next__"):  # a generator runs when it is consumed
                    for _ in output:
                        pass
                result["predicted"] = True
            except Exception as exc:
                result["predict_error"] = _error_text(exc, recorder.env_names)
    recorder.stop()
    result["ok"] = True
    result["modules"], result["edges"] = collect(baseline, recorder)
    result["env_vars"] = sorted(recorder.env_names)
    return finish(0)


# The result file is written before exiting; os._exit skips tearing down everything the model
# imported (a noticeable share of the capture's cost for large libraries).
BOOTSTRAP = (
    "import json, os, sys\n"
    "request = json.load(open(sys.argv[1], encoding='utf-8'))\n"
    "sys.path[:] = request['sys_path']\n"
    "from envkit.deps._child import main\n"
    "code = main(request)\n"
    "sys.stdout.flush()\n"
    "sys.stderr.flush()\n"
    "os._exit(code)\n"
)
