"""The static pass: what a model's own code and pickles can import, read without running them.

The capture subprocess sees only what runs: without an input example, or when the example
fails, an import made only while predicting is never seen. This pass reads

* the import statements (and ``importlib.import_module("literal")`` / ``__import__("literal")``
  calls) of every Python file the model ships: the models-from-code file and its
  ``code_paths`` copy (the AST; nothing is executed);
* the globals every pickle of the model references (read from the pickle's opcodes by the same
  scan that guards loading, :mod:`envkit.models.scan`; nothing is unpickled), and, for code that
  cloudpickle pickled by value (a class defined in a notebook or a script), the modules its
  bytecode imports (this interpreter's opcodes: the pickle is the saver's).

Each module is then located as a load of the model would find it (the model's code directory
first on the search path, then this interpreter's), without importing it, and mapped to the
installed distribution that provides it (:mod:`envkit.deps.distributions`). Modules of the model
itself and of the standard library are left out; a module that nothing installed provides is
*unresolved* (an import guarded by ``try/except ImportError`` is optional: left out).
"""

from __future__ import annotations

import ast
import logging
import os
import sys
from dataclasses import dataclass, field
from functools import partial
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from typing import Callable

from envkit.deps.distributions import DIST, LOCAL, DistributionIndex

logger = logging.getLogger(__name__)

# Exceptions whose handler makes an import inside its ``try`` optional.
_OPTIONAL_HANDLERS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
_NOT_MODEL_CODE = frozenset({"metadata", "__pycache__"})
# Never a requirement of the static pass: envkit (the flavor adds it, pinned), the script.
_NEVER = frozenset({"envkit", "__main__"})
_CLOUDPICKLE = ("cloudpickle.", "types.CodeType")


@dataclass
class StaticImports:
    """Modules the model's code and pickles reference: dotted name -> whether every reference
    is optional (inside ``try/except ImportError``), and where each was found."""

    modules: dict[str, bool] = field(default_factory=dict)
    found_in: dict[str, set[str]] = field(default_factory=dict)

    def add(self, module: str, *, optional: bool, where: str) -> None:
        if not module or module.startswith("."):
            return
        self.modules[module] = self.modules.get(module, True) and optional
        self.found_in.setdefault(module, set()).add(where)


@dataclass
class StaticDistributions:
    """What the static pass decided: distribution -> top-level modules, and the (non-optional)
    top-level modules nothing installed provides."""

    distributions: dict[str, list[str]] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)


# -- reading the model ---------------------------------------------------------------------------


def _handler_names(handler: ast.ExceptHandler) -> set[str]:
    if handler.type is None:
        return {"BaseException"}
    nodes = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "") for n in nodes}


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, found: StaticImports, where: str) -> None:
        self.found = found
        self.where = where
        self.optional_depth = 0

    def visit_Try(self, node: ast.Try) -> None:
        optional = any(_handler_names(h) & _OPTIONAL_HANDLERS for h in node.handlers)
        self.optional_depth += optional
        for statement in node.body:
            self.visit(statement)
        self.optional_depth -= optional
        rest: list[ast.AST] = [*node.handlers, *node.orelse, *node.finalbody]
        for child in rest:
            self.visit(child)

    visit_TryStar = visit_Try

    def _add(self, module: str) -> None:
        self.found.add(module, optional=self.optional_depth > 0, where=self.where)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return  # relative: the model's own package
        self._add(node.module)
        for alias in node.names:
            if alias.name != "*":
                self._add(f"{node.module}.{alias.name}")  # a submodule, when it is one

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self._add(first.value)
        self.generic_visit(node)


def source_imports(text: str, where: str, found: StaticImports) -> None:
    """Add the modules the Python source ``text`` imports (``where``: its name, for logs)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as exc:
        logger.debug("static pass: %s does not parse (%s)", where, exc)
        return
    _ImportVisitor(found, where).visit(tree)


def model_python_files(model_dir: Path) -> list[Path]:
    """The Python files a model ships (its models-from-code file, its code_paths copy...)."""
    files: list[Path] = []
    for root, dirs, names in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if d not in _NOT_MODEL_CODE)
        files.extend(Path(root) / n for n in sorted(names) if n.endswith(".py"))
    return [f for f in files if not f.is_symlink()]


def pickle_globals(model_dir: Path, found: StaticImports) -> None:
    """Add the modules of the globals the model's pickles reference (never unpickled)."""
    from envkit.errors import EnvkitError
    from envkit.models.scan import scan_model

    try:
        scan = scan_model(model_dir)
    except EnvkitError as exc:  # picklescan missing: the dynamic pass is all there is
        logger.info("static pass: the model's pickles were not read: %s", exc.message)
        return
    for file in scan.files:
        referenced = (*file.safe, *file.unknown, *file.dangerous)
        for qualified in referenced:
            # "module.name": the module is all but the last part (a nested class's qualified
            # name has more: only a module that is found counts, see _locate)
            found.add(qualified.rpartition(".")[0], optional=False, where=file.path)
        if any(q.startswith(_CLOUDPICKLE) for q in referenced):
            # (bytecode does not say which imports a try/except guards: one that is missing
            # is taken as optional, not listed as unresolved)
            for module in pickled_code_imports(model_dir / file.path):
                found.add(module, optional=True, where=file.path)


# -- code pickled by value ------------------------------------------------------------------------
# cloudpickle pickles a class or function that is not importable by name *by value*: its code
# objects are rebuilt with ``types.CodeType(*args)`` and the modules its globals name with
# ``subimport("name")``. Both are read here from the opcodes, on a stack of inert values:
# nothing is ever called, built or imported.


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass
class _Call:
    func: object
    args: object


_MARK = object()
_OPAQUE = object()
_CONSTANTS = frozenset(
    {"NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1",
     "LONG4", "FLOAT", "BINFLOAT", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE",
     "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES",
     "BINBYTES8", "BYTEARRAY8"}
)  # fmt: skip
_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_OPAQUE_PUSH = ("PERSID", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER")
_SUBIMPORT = frozenset({"subimport", "dynamic_subimport"})
_IMPORT_CALLS = frozenset({"import_module", "__import__"})


class _InertUnpickler:
    """Follows a pickle's opcodes with inert values; records every call it would make."""

    def __init__(self) -> None:
        self.stack: list[object] = []
        self.memo: dict[object, object] = {}
        self.calls: list[_Call] = []

    def _pop_mark(self) -> list[object]:
        items: list[object] = []
        while True:
            item = self.stack.pop()
            if item is _MARK:
                items.reverse()
                return items
            items.append(item)

    def step(self, name: str, arg: object) -> None:
        """Apply one opcode (``ValueError`` for one that is not followed: INST, OBJ)."""
        if name in _CONSTANTS:
            self.stack.append(arg)
            return
        handler = _HANDLERS.get(name)
        if handler is None:
            raise ValueError(f"opcode {name} is not followed")
        handler(self, arg)

    def _tuple(self, count: int) -> None:
        items = self.stack[len(self.stack) - count :] if count else []
        del self.stack[len(self.stack) - count :]
        self.stack.append(tuple(items))

    def _from_mark(self, as_list: bool) -> None:
        items = self._pop_mark()
        self.stack.append(items if as_list else tuple(items))

    def _append(self, count: int) -> None:
        items = [self.stack.pop() for _ in range(count)]
        self._extend(self.stack[-1], items[::-1])

    def _appends(self) -> None:
        items = self._pop_mark()
        self._extend(self.stack[-1], items)

    def _global(self, arg: object) -> None:
        module, _, attr = str(arg).partition(" ")
        self.stack.append(_Global(module, attr))

    def _stack_global(self) -> None:
        attr, module = self.stack.pop(), self.stack.pop()
        self.stack.append(_Global(str(module), str(attr)))

    def _reduce(self, with_kwargs: bool) -> None:
        if with_kwargs:
            self.stack.pop()
        args, func = self.stack.pop(), self.stack.pop()
        self._call(func, args)

    def _memoize(self, key: object) -> None:
        self.memo[len(self.memo) if key is None else key] = self.stack[-1]

    @staticmethod
    def _extend(target: object, items: list[object]) -> None:
        if isinstance(target, list):
            target.extend(items)

    def _call(self, func: object, args: object) -> None:
        call = _Call(func, args)
        self.calls.append(call)
        self.stack.append(call)


_Step = Callable[[_InertUnpickler, object], object]


def _tuple_step(reader: _InertUnpickler, arg: object, count: int) -> None:
    reader._tuple(count)


_HANDLERS: dict[str, _Step] = {
    **{name: partial(_tuple_step, count=n) for name, n in _TUPLES.items()},
    "TUPLE": lambda r, a: r._from_mark(False),
    "FROZENSET": lambda r, a: r._from_mark(False),
    "DICT": lambda r, a: r._from_mark(False),
    "LIST": lambda r, a: r._from_mark(True),
    "EMPTY_LIST": lambda r, a: r.stack.append([]),
    "EMPTY_DICT": lambda r, a: r.stack.append([]),
    "EMPTY_SET": lambda r, a: r.stack.append([]),
    "MARK": lambda r, a: r.stack.append(_MARK),
    "APPEND": lambda r, a: r._append(1),
    "SETITEM": lambda r, a: r._append(2),
    "APPENDS": lambda r, a: r._appends(),
    "SETITEMS": lambda r, a: r._appends(),
    "ADDITEMS": lambda r, a: r._appends(),
    "GLOBAL": lambda r, a: r._global(a),
    "STACK_GLOBAL": lambda r, a: r._stack_global(),
    "REDUCE": lambda r, a: r._reduce(False),
    "NEWOBJ": lambda r, a: r._reduce(False),
    "NEWOBJ_EX": lambda r, a: r._reduce(True),
    "BUILD": lambda r, a: r.stack.pop(),
    "PUT": lambda r, a: r._memoize(a),
    "BINPUT": lambda r, a: r._memoize(a),
    "LONG_BINPUT": lambda r, a: r._memoize(a),
    "MEMOIZE": lambda r, a: r._memoize(None),
    "GET": lambda r, a: r.stack.append(r.memo[a]),
    "BINGET": lambda r, a: r.stack.append(r.memo[a]),
    "LONG_BINGET": lambda r, a: r.stack.append(r.memo[a]),
    "POP": lambda r, a: r.stack.pop(),
    "POP_MARK": lambda r, a: r._pop_mark(),
    "DUP": lambda r, a: r.stack.append(r.stack[-1]),
    **{name: (lambda r, a: r.stack.append(_OPAQUE)) for name in _OPAQUE_PUSH},
    "BINPERSID": lambda r, a: r.stack.__setitem__(-1, _OPAQUE),
    **{name: (lambda r, a: None) for name in ("PROTO", "FRAME", "STOP", "READONLY_BUFFER")},
}


def _code_imports(args: tuple[object, ...]) -> list[str]:
    """The modules a code object built from ``args`` (``types.CodeType``'s, as cloudpickle
    passes them: the bytecode at 6, constants at 7, names at 8) imports by statement, and the
    literal names it passes to ``import_module``/``__import__``."""
    import dis

    if len(args) < 9 or not isinstance(args[6], bytes) or not isinstance(args[8], tuple):
        return []
    code, consts, names = args[6], args[7], args[8]
    import_name, extended = dis.opmap["IMPORT_NAME"], dis.EXTENDED_ARG
    found: list[str] = []
    high = 0
    for offset in range(0, len(code) - 1, 2):
        op, oparg = code[offset], code[offset + 1] | high
        high = oparg << 8 if op == extended else 0
        if op == import_name and oparg < len(names) and isinstance(names[oparg], str):
            found.append(names[oparg])
    if _IMPORT_CALLS & {n for n in names if isinstance(n, str)} and isinstance(consts, tuple):
        found.extend(c for c in consts if isinstance(c, str) and _is_module_name(c))
    return found


def _is_module_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def pickled_code_imports(path: Path) -> list[str]:
    """The modules the code pickled by value in ``path`` imports (see above); never loads it.
    A pickle the reader cannot follow gives what was found up to that point."""
    import pickletools

    reader = _InertUnpickler()
    try:
        with open(path, "rb") as handle:
            for opcode, arg, _ in pickletools.genops(handle):
                reader.step(opcode.name, arg)
    except Exception as exc:  # malformed, truncated, or an opcode not followed: stop there
        logger.debug("static pass: stopped reading %s: %s", path, exc)
    found: list[str] = []
    for call in reader.calls:
        func, args = call.func, call.args
        if not isinstance(args, tuple):
            continue
        if isinstance(func, _Global) and func.name in _SUBIMPORT and args:
            if isinstance(args[0], str) and _is_module_name(args[0]):
                found.append(args[0])
        elif _is_code_type(func):
            found.extend(_code_imports(args))
    return found


def _is_code_type(func: object) -> bool:
    if isinstance(func, _Global):
        return (func.module, func.name) == ("types", "CodeType")
    # cloudpickle: _builtin_type("CodeType")
    return (
        isinstance(func, _Call)
        and isinstance(func.func, _Global)
        and func.func.name == "_builtin_type"
        and func.args == ("CodeType",)
    )


def read_model(model_dir: str | os.PathLike[str]) -> StaticImports:
    """The modules the model at ``model_dir`` references in its code and pickles."""
    root = Path(model_dir)
    found = StaticImports()
    for path in model_python_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        source_imports(text, path.relative_to(root).as_posix(), found)
    pickle_globals(root, found)
    return found


# -- mapping to distributions --------------------------------------------------------------------


def code_directories(model_dir: Path) -> list[str]:
    """The model's code directories (the ``code`` key of its flavors): first on ``sys.path``
    when the model loads."""
    from envkit.models.model import Model

    try:
        flavors = Model.load(model_dir).flavors
    except Exception:
        return []
    dirs: list[str] = []
    for conf in flavors.values():
        code = conf.get("code") if isinstance(conf, dict) else None
        if isinstance(code, str) and code and (model_dir / code).is_dir():
            dirs.append(os.path.abspath(model_dir / code))
    return dirs


def _locate(module: str, search_path: list[str]) -> tuple[str, ModuleSpec] | None:
    """The deepest found prefix of ``module`` and its spec, found as an import would find it,
    without importing (or running) anything."""
    parts = module.split(".")
    path: list[str] | None = search_path
    found: tuple[str, ModuleSpec] | None = None
    for depth in range(1, len(parts) + 1):
        if path is None:
            break
        try:
            spec = PathFinder.find_spec(parts[depth - 1], path)
        except (ImportError, ValueError, OSError):
            spec = None
        if spec is None:
            break
        found = (".".join(parts[:depth]), spec)
        locations = spec.submodule_search_locations
        path = list(locations) if locations is not None else None
    return found


def _spec_file(spec: ModuleSpec) -> str | None:
    if spec.origin and spec.origin not in ("built-in", "frozen", "namespace"):
        return spec.origin
    locations = list(spec.submodule_search_locations or ())
    return os.path.join(locations[0], "__init__.py") if locations else None


def needed_statically(
    found: StaticImports, index: DistributionIndex, model_dir: str | os.PathLike[str]
) -> StaticDistributions:
    """Map the modules the static pass found to installed distributions (see module doc)."""
    root = os.path.join(os.path.abspath(model_dir), "")
    search_path = code_directories(Path(model_dir)) + [p or os.getcwd() for p in sys.path]
    result = StaticDistributions()
    unresolved: set[str] = set()
    for module in sorted(found.modules):
        top = module.partition(".")[0]
        if not top.isidentifier() or index.is_stdlib(top, None) or top in _NEVER:
            continue
        located = _locate(module, search_path)
        if located is None:
            if not found.modules[module] and not _found_as_submodule(module, found):
                unresolved.add(top)
            continue
        name, spec = located
        file = _spec_file(spec)
        if spec.origin in (None, "namespace") and name == top:
            # A bare namespace package (``import google``): its portions are what decide; it
            # counts only when one distribution provides it.
            candidates = index.top_level.get(top, [])
            if len(candidates) == 1 and top not in result.distributions.get(candidates[0], []):
                result.distributions.setdefault(candidates[0], []).append(top)
            continue
        if file is not None and os.path.abspath(file).startswith(root):
            continue  # the model's own code
        owner = index.owner(name, file)
        if owner.kind == DIST and owner.dist:
            modules = result.distributions.setdefault(owner.dist, [])
            if top not in modules:
                modules.append(top)
        elif owner.kind == LOCAL and not found.modules[module]:
            unresolved.add(top)
    result.unresolved = sorted(unresolved)
    return result


def _found_as_submodule(module: str, found: StaticImports) -> bool:
    """``from pkg import name`` adds ``pkg.name`` in case it is a submodule; when it is not one
    (a function), ``pkg`` itself decides."""
    parent = module.rpartition(".")[0]
    return bool(parent) and parent in found.modules
