"""The layers import downward only: models -> deps -> flavors -> sandbox -> docker/serving ->
cli, counting imports inside functions too. Names a layer above reaches by a string (MLmodel's
loader_module, the lazy re-exports of envkit.models, the capture's loader) are not imports."""

from __future__ import annotations

import ast
from pathlib import Path

LAYERS = {
    "models": 0,
    "deps": 1,
    "pyfunc": 2,
    "sklearn": 2,
    "xgboost": 2,
    "lightgbm": 2,
    "catboost": 2,
    "statsmodels": 2,
    "prophet": 2,
    "pmdarima": 2,
    "diviner": 2,
    "onnx": 2,
    "spark": 2,
    "h2o": 2,
    "sandbox": 3,
    "docker": 4,
    "serving": 4,
    "integrations": 4,
    "cli": 5,
}
PACKAGE = Path(__file__).resolve().parents[2] / "envkit"


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if parts[0] == "envkit" and len(parts) > 1 else None


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        mine = _layer(module)
        if mine is None:
            continue
        for line, target in _imports(path):
            theirs = _layer(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert upward == []
