"""What an environment holds beyond what a model's requirements need.

Run where the environment is (the in-environment runner, or ``envkit deps`` in a deployed
environment): the distributions installed there that neither the requirements nor envkit's
runtime require, directly or through what they declare. In an environment envkit built, the
answer is none: nothing of envkit's tooling is ever installed there.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["required_closure", "unrequested_distributions"]


def unrequested_distributions(requirements: Iterable[str]) -> list[str]:
    """Canonical names of the distributions installed here that ``requirements`` (plus envkit
    itself, the loader) do not need, sorted."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    needed = required_closure(["envkit", *requirements])
    installed = {
        str(canonicalize_name(dist.metadata["Name"]))
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    return sorted(installed - needed)


def required_closure(lines: Iterable[str]) -> set[str]:
    """Canonical names of the distributions ``lines`` require, transitively, as installed here
    (extras followed, markers evaluated; a line that is not a requirement is skipped)."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[Requirement] = []
    for line in lines:
        try:
            todo.append(Requirement(line))
        except InvalidRequirement:
            continue
    while todo:
        req = todo.pop()
        key = (str(canonicalize_name(req.name)), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            declared = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        extras = req.extras or {""}
        for line in declared:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dep)
    return {name for name, _ in seen}
