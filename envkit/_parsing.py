"""YAML and JSON from untrusted files, bounded: fast where libyaml is there, never a crash.

``load_yaml`` parses with libyaml's C parser when PyYAML has it (several times faster than the
pure-Python parser) and composes the node tree in Python with a nesting limit: libyaml's own
composer recurses in C and crashes the interpreter on input nested ~100,000 deep. Too deep a
document raises :class:`YAMLNestingError`, a ``yaml.YAMLError``, so the callers' existing
``except yaml.YAMLError`` reports it as malformed YAML. ``load_json`` turns the
``RecursionError`` of deeply nested JSON into :class:`JSONNestingError`, a ``ValueError`` as
``json``'s own decoding errors are.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

__all__ = ["MAX_NESTING", "JSONNestingError", "YAMLNestingError", "load_json", "load_yaml"]

# Deeper than any file envkit or MLflow writes, and far from Python's recursion limit.
MAX_NESTING = 100


class YAMLNestingError(yaml.YAMLError):
    """A YAML document nested deeper than :data:`MAX_NESTING`."""

    def __init__(self, line: int | None = None) -> None:
        self.problem = f"nested deeper than {MAX_NESTING} levels"
        self.problem_mark = None
        self.line = line
        super().__init__(self.problem)


class JSONNestingError(ValueError):
    """A JSON document nested too deeply for the decoder."""

    def __init__(self) -> None:
        super().__init__(f"nested deeper than {MAX_NESTING} levels")


class _LimitedComposer(Composer):
    """Composer that refuses documents nested deeper than :data:`MAX_NESTING`."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise YAMLNestingError()
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _c_parser() -> Any:
    try:
        from yaml import cyaml
    except ImportError:
        return None
    return getattr(cyaml, "CParser", None)


def _loader_class() -> type:
    """libyaml's parser with the bounded Python composer, or the pure-Python safe loader."""
    cp = _c_parser()
    if cp is None:  # PyYAML built without libyaml

        class PyLoader(
            yaml.reader.Reader,
            yaml.scanner.Scanner,
            yaml.parser.Parser,
            _LimitedComposer,
            SafeConstructor,
            Resolver,
        ):
            def __init__(self, stream: Any) -> None:
                yaml.reader.Reader.__init__(self, stream)
                yaml.scanner.Scanner.__init__(self)
                yaml.parser.Parser.__init__(self)
                _LimitedComposer.__init__(self)
                SafeConstructor.__init__(self)
                Resolver.__init__(self)

        return PyLoader

    class CLoader(_LimitedComposer, cp, SafeConstructor, Resolver):  # type: ignore[misc,valid-type]
        # The C parser gives the events; the Composer (first in the MRO) builds the nodes.
        def __init__(self, stream: Any) -> None:
            cp.__init__(self, stream)
            _LimitedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return CLoader


_LOADER = _loader_class()


def load_yaml(text: str | bytes) -> Any:
    """``yaml.safe_load(text)``, faster, and bounded in nesting (:class:`YAMLNestingError`)."""
    loader = _LOADER(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise YAMLNestingError() from None
    finally:
        loader.dispose()


def load_json(text: str | bytes, *, max_nesting: int = MAX_NESTING) -> Any:
    """``json.loads(text)``; a document nested deeper than ``max_nesting`` raises
    :class:`JSONNestingError`."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise JSONNestingError() from None
    if _nesting_exceeds(data, max_nesting):
        raise JSONNestingError()
    return data


def _nesting_exceeds(data: Any, limit: int) -> bool:
    """Whether lists/dicts in ``data`` nest deeper than ``limit`` (walked without recursion)."""
    stack = [(data, 1)] if isinstance(data, (list, dict)) else []
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, (list, dict)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False
