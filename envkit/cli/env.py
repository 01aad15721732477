"""``envkit env list | prune | backends``: the environment cache and the sandbox backends."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "env",
        help="list or prune cached environments; show which backends can run",
        description="Manage envkit's environment cache ($ENVKIT_HOME or ~/.cache/envkit).",
    )
    commands = parser.add_subparsers(dest="env_command", metavar="COMMAND")
    list_parser = commands.add_parser("list", help="list cached environments")
    list_parser.add_argument("--format", choices=("text", "json"), default="text")
    list_parser.set_defaults(func=run_list)
    prune = commands.add_parser(
        "prune",
        help="remove unfinished builds, temporary directories of killed runs, and environments "
        "unused for DAYS",
    )
    prune.add_argument(
        "--older-than", metavar="DAYS", type=float, help="remove environments unused for DAYS"
    )
    prune.add_argument("--all", action="store_true", help="remove every cached environment")
    prune.set_defaults(func=run_prune)
    verify = commands.add_parser(
        "verify",
        help="check cached environments against their manifest and every file's hash in its "
        "distribution's RECORD; exit 1 when one was modified",
    )
    verify.add_argument("keys", nargs="*", metavar="KEY", help="only these environments")
    verify.add_argument("--fix", action="store_true", help="remove modified environments")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(func=run_verify)
    backends = commands.add_parser("backends", help="show each backend and why it cannot run")
    backends.set_defaults(func=run_backends)
    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def run_list(args: argparse.Namespace) -> int:
    from envkit.sandbox.cache import EnvCache

    cache = EnvCache()
    records = cache.records()
    if args.format == "json":
        data = [{**r.to_dict(), "path": str(r.path), "last_used": r.last_used} for r in records]
        print(json.dumps({"root": str(cache.root), "environments": data}, indent=2))
        return 0
    print(f"{len(records)} environment(s) in {cache.envs}")
    now = time.time()
    for record in records:
        reqs = [r for r in record.spec.requirements if not r.startswith("envkit")]
        shown = ", ".join(reqs[:6]) + (f", +{len(reqs) - 6} more" if len(reqs) > 6 else "")
        print(
            f"{record.key}  {record.backend:<10} python {record.python:<8} "
            f"used {_age(now - record.last_used)} ago  {shown or '(no requirements)'}"
        )
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from envkit.errors import UsageError
    from envkit.sandbox.cache import EnvCache

    if args.older_than is not None and args.older_than < 0:
        raise UsageError("--older-than takes a number of days >= 0")
    from envkit.sandbox.tempdirs import remove_stale_tempdirs

    cache = EnvCache()
    removed = cache.prune(older_than_days=args.older_than, remove_all=args.all)
    removed += [
        f"{path} (left by a process that no longer runs)" for path in remove_stale_tempdirs()
    ]
    removed += [f"container {name} (left by an envkit that was killed)" for name in _reap()]
    for line in removed:
        print(f"removed {line}")
    print(f"{len(removed)} item(s) removed from {cache.envs}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from envkit.sandbox.cache import EnvCache
    from envkit.sandbox.manifest import difference, verify_records

    cache = EnvCache()
    results = []
    for record in cache.records():
        if args.keys and record.key not in args.keys:
            continue
        problems = [f"manifest: {why}"] if (why := difference(record.path)) else []
        problems += verify_records(record.path)
        results.append({"key": record.key, "path": str(record.path), "problems": problems})
        if problems and args.fix:
            cache.remove(record)
    if args.format == "json":
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            state = "modified" if row["problems"] else "ok"
            print(f"{row['key']}  {state}  {row['path']}")
            for problem in row["problems"][:20]:
                print(f"    {problem}")
            if row["problems"] and args.fix:
                print("    removed: the next run rebuilds it")
    return 1 if any(row["problems"] for row in results) else 0


def _reap() -> list[str]:
    """Containers killed envkit processes left, when a Docker engine is here to ask."""
    import importlib.util

    if importlib.util.find_spec("docker") is None:
        return []
    from envkit import docker as db
    from envkit.errors import EnvkitError

    try:
        with db.engine(timeout=30) as client:
            return db.reap_orphaned_containers(client)
    except EnvkitError:
        return []  # no engine here: nothing of ours can be running in one


def run_backends(args: argparse.Namespace) -> int:
    from envkit.sandbox.backends import backend_reasons

    for name, reason in backend_reasons().items():
        print(f"{name:<12} {'available' if reason is None else 'unavailable: ' + reason}")
    return 0
