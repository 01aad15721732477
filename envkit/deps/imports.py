"""Run the capture subprocess and decide which distributions a model needs.

:func:`capture_imports` loads the model in a fresh interpreter (the saver's own, with the
saver's ``sys.path``) and returns :class:`CapturedImports`: the modules imported while the model
loaded and predicted, who imported them, and the environment variable names read.
:func:`needed_distributions` turns that into distributions:

* a module's distribution is found from the file that was imported (see
  :mod:`envkit.deps.distributions`);
* a distribution is needed when the model imported it (its pickle, its code, its ``code_paths``,
  envkit's loader on its behalf), or when a needed distribution imported it *and declares it*
  as a requirement. A library importing an undeclared distribution is an optional import
  (``numpy.f2py`` trying ``charset_normalizer``): the library works without it, so the model
  does too. What a deserializer (cloudpickle, joblib...) imports counts as the model's own
  import, but only when the deserializer is needed itself: xgboost importing scikit-learn,
  which imports joblib, which imports cloudpickle, makes none of them a requirement;
* the standard library, the model's own code, envkit itself, development tooling (pytest...)
  and build tools (pip, setuptools, wheel...) are never requirements.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.deps.distributions import LOCAL, STDLIB, DistributionIndex, requires

DEFAULT_TIMEOUT = 120.0
TIMEOUT_VARIABLE = "ENVKIT_CAPTURE_TIMEOUT"
# What the capture process loads the model with (named, not imported: a layer above deps).
PYFUNC_LOADER = "envkit.pyfunc.loading:load_model"

# Never requirements: envkit (added pinned by the flavor), its development tooling, build tools.
EXCLUDED_DISTRIBUTIONS = frozenset(
    {
        "envkit",
        # development tooling
        "pytest",
        "pluggy",
        "iniconfig",
        "py",
        "execnet",
        "coverage",
        "hypothesis",
        "tox",
        "ruff",
        "mypy",
        "mypy-extensions",
        "pre-commit",
        # build tools and installers
        "pip",
        "setuptools",
        "wheel",
        "build",
        "pyproject-hooks",
        "hatchling",
        "hatch-vcs",
        "flit-core",
        "poetry-core",
        "pdm-backend",
        "setuptools-scm",
        "scikit-build-core",
        "meson-python",
        "uv",
        "virtualenv",
        "pip-tools",
    }
)
_EXCLUDED_PREFIXES = ("pytest-", "types-")

# Libraries that rebuild the model's objects: what they import while doing so, the model needs
# (cloudpickle importing a module a pickled function refers to, skops a class it restores).
DESERIALIZERS = frozenset({"cloudpickle", "joblib", "skops", "dill"})


def is_excluded(name: str) -> bool:
    return name in EXCLUDED_DISTRIBUTIONS or name.startswith(_EXCLUDED_PREFIXES)


def capture_timeout() -> float:
    """``ENVKIT_CAPTURE_TIMEOUT`` seconds (default 120)."""
    from envkit.errors import UsageError

    raw = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    # (the value itself is not repeated: values of environment variables are never shown)
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{TIMEOUT_VARIABLE} must be a number of seconds")
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds")
    return value


class CaptureFailed(Exception):
    """The model could not be loaded in the capture subprocess (``reason`` says why)."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class CapturedImports:
    """What a model imported (and which variable names it read) while loading and predicting."""

    modules: dict[str, str | None]  # module -> file it was imported from
    edges: list[tuple[str, str]]  # (importer module, imported module)
    env_vars: list[str]
    predicted: bool = False
    predict_error: str | None = None
    seconds: float = 0.0


def capture_imports(
    model_dir: str | os.PathLike[str],
    *,
    input_example_info: Mapping[str, Any] | None = None,
    record_env_vars: bool = True,
    timeout: float | None = None,
) -> CapturedImports:
    """Load the model at ``model_dir`` in a fresh interpreter and record what it imports.

    Raises :class:`CaptureFailed` when the model cannot be loaded there or time runs out.
    """
    from envkit import _subprocess
    from envkit.deps._child import BOOTSTRAP

    timeout = capture_timeout() if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="envkit-capture-") as tmp:
        request_path = Path(tmp) / "request.json"
        output_path = Path(tmp) / "result.json"
        request = {
            "model_dir": os.fspath(Path(model_dir).absolute()),
            "sys_path": [p for p in sys.path],
            "output": str(output_path),
            "input_example_info": dict(input_example_info) if input_example_info else None,
            "record_env_vars": record_env_vars,
            "loader": PYFUNC_LOADER,
        }
        request_path.write_text(json.dumps(request), encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # never leave __pycache__ inside the model
        if not sys.executable:
            raise CaptureFailed("this interpreter does not know its own executable")
        try:
            outcome = _subprocess.run(
                [sys.executable, "-B", "-c", BOOTSTRAP, str(request_path)],
                env=env,
                timeout=timeout,
            )
        except OSError as exc:
            raise CaptureFailed(f"the capture process could not be started: {exc}") from None
        if outcome.timed_out:
            raise CaptureFailed(
                f"loading the model in a fresh process timed out after {timeout:g}s "
                f"(set {TIMEOUT_VARIABLE} to allow more)"
            )
        try:
            result = json.loads(output_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            from envkit._subprocess import last_error_line

            last = last_error_line(outcome.stderr)
            raise CaptureFailed(
                f"the capture process exited with code {outcome.returncode}"
                + (f": {last}" if last else ""),
                detail=outcome.stderr[-3000:],
            )
    if not result.get("ok"):
        raise CaptureFailed(
            f"the model does not load in a fresh process: {result.get('error', 'unknown error')}",
            detail=result.get("traceback"),
        )
    return CapturedImports(
        modules={str(k): v for k, v in (result.get("modules") or {}).items()},
        edges=[(str(a), str(b)) for a, b in result.get("edges") or []],
        env_vars=[str(n) for n in result.get("env_vars") or []],
        predicted=bool(result.get("predicted")),
        predict_error=result.get("predict_error"),
        seconds=float(result.get("seconds") or 0.0),
    )


@dataclass
class NeededDistributions:
    """The outcome of mapping captured imports to distributions."""

    distributions: dict[str, list[str]]  # canonical name -> top-level modules that led to it
    unresolved: list[str] = field(default_factory=list)  # local modules outside the model
    excluded: dict[str, list[str]] = field(default_factory=dict)  # tooling that was imported
    optional: dict[str, list[str]] = field(default_factory=dict)  # undeclared library imports


def needed_distributions(
    captured: CapturedImports,
    index: DistributionIndex,
    *,
    model_dir: str | os.PathLike[str] | None = None,
) -> NeededDistributions:
    """Decide which installed distributions the captured imports require (see module doc)."""
    owners, kinds, unresolved = _module_owners(captured, index, model_dir)
    modules_by_dist = _modules_by_distribution(owners, index)
    edges = _distribution_edges(captured, owners, kinds)
    # A distribution loaded without any import edge from another one: keep it (cautious).
    unattributed = {
        name
        for name in modules_by_dist
        if name not in edges.root_targets
        and name not in edges.incoming
        and not any(name in targets for targets in edges.deserialized.values())
    }
    roots = edges.root_targets | unattributed
    needed = _reachable(roots, edges.incoming, index)
    while True:  # what a needed deserializer rebuilt is the model's own import
        rebuilt = set().union(*(edges.deserialized.get(name, set()) for name in needed))
        if rebuilt <= roots:
            break
        roots |= rebuilt
        needed = _reachable(roots, edges.incoming, index)
    optional = {
        name: sorted(modules_by_dist.get(name, ()))
        for name in modules_by_dist
        if name not in needed and not is_excluded(name)
    }
    excluded = {name: sorted(mods) for name, mods in modules_by_dist.items() if is_excluded(name)}
    return NeededDistributions(
        distributions={name: sorted(modules_by_dist.get(name, ())) for name in sorted(needed)},
        unresolved=sorted(unresolved),
        excluded=excluded,
        optional=optional,
    )


def _module_owners(
    captured: CapturedImports,
    index: DistributionIndex,
    model_dir: str | os.PathLike[str] | None,
) -> tuple[dict[str, str | None], dict[str, str], set[str]]:
    """Module -> owning distribution (None: root-like importer), module -> owner kind, and the
    top-level names of local modules no distribution owns."""
    model_root = (
        os.path.normcase(os.path.abspath(os.fspath(model_dir))) + os.sep if model_dir else None
    )
    owners: dict[str, str | None] = {}
    kinds: dict[str, str] = {}
    unresolved: set[str] = set()
    for module, file in captured.modules.items():
        if file and model_root and os.path.normcase(os.path.abspath(file)).startswith(model_root):
            kinds[module] = "model"
            owners[module] = None
            continue
        owner = index.owner(module, file)
        kinds[module] = owner.kind
        owners[module] = owner.dist
        if owner.kind == LOCAL:
            unresolved.add(module.partition(".")[0])
    return owners, kinds, unresolved


def _nearest(recorded: Mapping[str, str | None], module: str) -> str | None:
    """``recorded``'s value for ``module``, or for its nearest recorded parent package."""
    while module not in recorded:
        module = module.rpartition(".")[0]
        if not module:
            return None
    return recorded[module]


def _dist_of(owners: dict[str, str | None], module: str) -> str | None:
    """The distribution of ``module``, or of its nearest recorded parent package."""
    return _nearest(owners, module)


def _modules_by_distribution(
    owners: dict[str, str | None], index: DistributionIndex
) -> dict[str, set[str]]:
    """Distribution -> the top-level import names it declares among the captured modules."""
    modules_by_dist: dict[str, set[str]] = {}
    for module, name in owners.items():
        if name:
            modules_by_dist.setdefault(name, set())
            top = module.partition(".")[0]
            if name in index.top_level.get(top, ()):
                modules_by_dist[name].add(top)
    return modules_by_dist


@dataclass
class _Edges:
    """Cross-distribution import edges.

    ``root_targets``: imported by the model (or on its behalf), needed unconditionally;
    ``incoming``: target -> the distributions that imported it; ``deserialized``: deserializer
    -> what it imported (needed when the deserializer is).
    """

    root_targets: set[str] = field(default_factory=set)
    incoming: dict[str, set[str]] = field(default_factory=dict)
    deserialized: dict[str, set[str]] = field(default_factory=dict)


def _distribution_edges(
    captured: CapturedImports, owners: dict[str, str | None], kinds: dict[str, str]
) -> _Edges:
    """Cross-distribution import edges, sorted by what justifies their target (:class:`_Edges`)."""
    edges = _Edges()
    for importer, imported in captured.edges:
        target = _dist_of(owners, imported)
        if target is None:
            continue
        # An importer missing from the modules failed to import (catboost's optional widget,
        # which needs ipywidgets): its package's kind and distribution stand for it.
        kind = _nearest(kinds, importer)
        if importer.partition(".")[0] == "importlib":
            continue  # the import machinery itself (C extensions importing their package)
        source = _dist_of(owners, importer)
        if source == target:
            continue
        if source is None or kind in (STDLIB, LOCAL, "model", None):
            edges.root_targets.add(target)
        elif source in DESERIALIZERS:
            edges.deserialized.setdefault(source, set()).add(target)
        else:
            edges.incoming.setdefault(target, set()).add(source)
    return edges


def _reachable(
    roots: set[str], incoming: dict[str, set[str]], index: DistributionIndex
) -> set[str]:
    """``roots`` and what they import and declare as a requirement, transitively (tooling
    excluded)."""
    needed: set[str] = set()
    frontier = [n for n in roots if not is_excluded(n)]
    declared: dict[str, set[str]] = {}
    while frontier:
        name = frontier.pop()
        if name in needed:
            continue
        needed.add(name)
        for target, sources in incoming.items():
            if target in needed or is_excluded(target) or name not in sources:
                continue
            if name not in declared:
                declared[name] = requires(index, name)
            if target in declared[name]:
                frontier.append(target)
    return needed
