"""Contain the model's process: no host secrets, no network, read-only inputs, limits.

A venv-based backend (uv, virtualenv) runs the model as a process of this machine; this module
turns its argv and environment into a contained one, with what Linux allows here:

- **environment**: only what the run needs (PATH, a scratch HOME and TMPDIR, the locale) and
  the variables the user passes through by name (``--env NAME``); no other host variable;
- **network**: a new, empty network namespace (``unshare --net``);
- **filesystem**: the model, the input and the environment bind-mounted read-only in a private
  mount namespace; the run's work directory is the only place it writes;
- **limits**: address space, CPU time, file size and processes (``setrlimit``);
- **home**: the home directory (and, as root, any other directory that keeps ``nobody`` from
  the model's files) is hidden behind an empty file system, with only the paths the run needs
  (the model, its input, the environment, the interpreter) mounted back: no ``~/.aws``,
  ``~/.ssh`` or ``~/.netrc`` to read;
- **user**: when envkit runs as root, the model runs as ``nobody``.

Each measure is tried and recorded as held or not, with the reason (:class:`Containment`):
the report says what held on this machine. ``--no-contain`` runs the model as before.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Containment", "ContainmentPolicy", "Measure", "contained_command"]

NOBODY = 65534
# Host variables the contained process keeps (the locale and time zone), besides those passed.
_KEPT = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class ContainmentPolicy:
    """What to contain. ``pass_env``: host variables the model gets (by name; the model's
    ``environment_variables.txt`` lists the names it reads). Limits: ``None`` is no limit."""

    enabled: bool = True
    pass_env: tuple[str, ...] = ()
    memory_bytes: int | None = 16 * 1024**3
    cpu_seconds: int | None = 3600
    file_size_bytes: int | None = 4 * 1024**3
    processes: int | None = 512


@dataclass
class Measure:
    """One containment measure: whether it held, and how or why not."""

    held: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"held": self.held, "detail": self.detail}


@dataclass
class Containment:
    """What held for one run of the model (the report's ``containment``)."""

    measures: dict[str, Measure] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {name: m.to_dict() for name, m in self.measures.items()}

    def summary(self) -> str:
        held = [n for n, m in self.measures.items() if m.held]
        missing = [f"{n} ({m.detail})" for n, m in self.measures.items() if not m.held]
        text = "held: " + (", ".join(held) or "nothing")
        return text + ("; not held: " + "; ".join(missing) if missing else "")


@dataclass
class ContainedCommand:
    argv: list[str]
    env: dict[str, str]
    containment: Containment
    limits: dict[int, int]  # resource.RLIMIT_* -> value, set in the child before exec


def contained_command(
    argv: Sequence[str],
    *,
    env_root: Path,
    env_bin: Path,
    read_only: Sequence[Path],
    writable: Sequence[Path],
    scratch: Path,
    extra_env: Mapping[str, str] | None,
    policy: ContainmentPolicy,
) -> ContainedCommand:
    """``argv`` wrapped to run contained (see the module doc), its environment, and what held."""
    containment = Containment()
    env = _reduced_environment(env_root, env_bin, scratch, extra_env, policy, containment)
    # (the environment's python links to its base interpreter, which nobody must reach too)
    needed = [p for p in (*read_only, env_root, _installation(env_bin)) if p.exists()]
    namespace = _namespace_support()
    hiding = _plan_hiding(needed, Path(writable[0]), namespaced=namespace is None)
    containment.measures["home"] = hiding.measure
    wrapped = list(argv)
    user = _user_measure(needed, hiding)
    setpriv = _setpriv()
    if user.held and os.geteuid() == 0 and setpriv is not None:
        wrapped = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *wrapped]
        for path in (*writable, scratch):
            _hand_to_nobody(path)
    containment.measures["user"] = user
    if namespace is None:
        probe = env_root / ".envkit-read-only-probe"
        wrapped = _namespaced(wrapped, Path(writable[0]), probe, hiding)
        containment.measures["network"] = Measure(True, "a new network namespace (loopback only)")
        containment.measures["filesystem"] = Measure(
            True, "every file system read-only (the model, its input, the cached environments, "
            "the host's files) but the run's work directory"
        )  # fmt: skip
    else:
        containment.measures["network"] = Measure(False, namespace)
        containment.measures["filesystem"] = Measure(False, namespace)
    limits = _limits(policy)
    containment.measures["limits"] = Measure(bool(limits), _describe_limits(policy))
    return ContainedCommand(wrapped, env, containment, limits)


def _reduced_environment(
    env_root: Path,
    env_bin: Path,
    scratch: Path,
    extra_env: Mapping[str, str] | None,
    policy: ContainmentPolicy,
    containment: Containment,
) -> dict[str, str]:
    env = {
        "PATH": f"{env_bin}{os.pathsep}{_SYSTEM_PATH}",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "VIRTUAL_ENV": str(env_root),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update({k: os.environ[k] for k in _KEPT if k in os.environ})
    passed = [name for name in policy.pass_env if name in os.environ]
    env.update({name: os.environ[name] for name in passed})
    env.update(extra_env or {})
    kept = len([k for k in os.environ if k in env and k not in ("PATH", "HOME", "TMPDIR")])
    detail = f"{kept} of {len(os.environ)} host variables kept (locale"
    detail += f"; passed with --env: {', '.join(passed)})" if passed else ")"
    containment.measures["environment"] = Measure(True, detail)
    return env


@functools.lru_cache(maxsize=1)
def _namespace_support() -> str | None:
    """``None`` when ``unshare --net --mount`` works here, else why not (probed once)."""
    import subprocess

    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare is not installed (util-linux)"
    argv = [unshare, "--net", "--mount", "--propagation", "private", "true"]
    if os.geteuid() != 0:
        argv[1:1] = ["--map-root-user"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no reason given"])[-1]
        return f"the kernel refuses new namespaces here ({why})"
    return None


# In the new mount namespace: every mount read-only (the host's files, every cached
# environment, the model), but for the run's work directory, then the command. A remount that
# fails stops the run: the model never runs believing it is contained when it is not.
_READ_ONLY_SCRIPT = r"""
set -e
# The new network namespace's loopback starts down: up, the model reaches only itself (a JVM,
# as Spark's, refuses to start with no interface at all).
ip link set lo up 2>/dev/null || true
if [ -n "$ENVKIT_HIDE" ]; then
    # Hide each directory behind an empty tmpfs, the paths the run needs mounted back
    # (the lists are newline-separated: split on newlines only, and expand no pattern).
    IFS='
'
    set -f
    stage="$ENVKIT_WRITABLE/.envkit-stage"
    mkdir -p "$stage"
    i=0
    for keep in $ENVKIT_KEEP; do
        i=$((i + 1))
        if [ -d "$keep" ]; then mkdir "$stage/$i"; else : > "$stage/$i"; fi
        mount --rbind "$keep" "$stage/$i"
    done
    for hide in $ENVKIT_HIDE; do
        mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev envkit-hidden "$hide"
    done
    i=0
    for keep in $ENVKIT_KEEP; do
        i=$((i + 1))
        if [ -d "$stage/$i" ]; then mkdir -p "$keep"
        else mkdir -p "$(dirname "$keep")"; : > "$keep"; fi
        mount --move "$stage/$i" "$keep"
        rmdir "$stage/$i" 2>/dev/null || rm -f "$stage/$i"
    done
    rmdir "$stage"
fi
mount --bind "$ENVKIT_WRITABLE" "$ENVKIT_WRITABLE"
for point in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
    case "$point" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|"$ENVKIT_WRITABLE") continue;; esac
    mount -o remount,bind,ro "$point" 2>/dev/null || true
done
if touch "$ENVKIT_PROBE" 2>/dev/null; then
    echo "envkit: the file system could not be made read-only here (use --no-contain)" >&2
    exit 97
fi
unset ENVKIT_WRITABLE ENVKIT_PROBE ENVKIT_HIDE ENVKIT_KEEP IFS
exec "$@"
"""


def _namespaced(argv: list[str], writable: Path, probe: Path, hiding: Hiding) -> list[str]:
    """``argv`` in new network and mount namespaces where everything but ``writable`` is
    read-only (``probe``, a path the model must not be able to create, checks it held), and
    the directories ``hiding`` names are hidden."""
    prefix = [shutil.which("unshare") or "unshare", "--net", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        prefix.insert(1, "--map-root-user")
    env = ["env", f"ENVKIT_WRITABLE={writable}", f"ENVKIT_PROBE={probe}"]
    if hiding.hide:
        # (newline-separated, and the script splits on newlines only: paths keep their spaces)
        env += [
            "ENVKIT_HIDE=" + "\n".join(map(str, hiding.hide)),
            "ENVKIT_KEEP=" + "\n".join(map(str, hiding.keep)),
        ]
    return [*prefix, *env, "/bin/sh", "-c", _READ_ONLY_SCRIPT, "sh", *argv]


def _installation(env_bin: Path) -> Path:
    """The installation of the environment's base interpreter (``<prefix>/bin/python3.X``)."""
    return (env_bin / "python").resolve().parent.parent


@dataclass
class Hiding:
    """Directories hidden from the model (``hide``) and the paths in them it keeps (``keep``)."""

    hide: list[Path]
    keep: list[Path]
    measure: Measure
    blocked: list[Path] = field(default_factory=list)  # hidden dirs that kept nobody out


def _plan_hiding(needed: Sequence[Path], work: Path, *, namespaced: bool) -> Hiding:
    """Hide the home directory, and as root each directory that keeps ``nobody`` from a
    needed path, keeping the needed paths inside them; a directory that cannot be hidden
    (a needed path is that directory, or the run's work directory is in it) stays."""
    if not namespaced:
        return Hiding([], [], Measure(False, "no mount namespace here"))
    candidates = {Path.home().resolve()}
    blocked = {b for b in (_first_blocked(p) for p in needed) if b is not None}
    if os.geteuid() == 0:
        candidates |= blocked
    # Both the path as the run names it and where it leads (a symlink on the way).
    forms = {q for p in needed for q in (Path(os.path.abspath(p)), p.resolve())}
    eligible = [
        d
        for d in sorted(candidates)
        if d != Path("/")
        and d.is_dir()
        and not any(d == p or d.is_relative_to(p) for p in forms)
        and not work.resolve().is_relative_to(d)
        and not Path(os.path.abspath(work)).is_relative_to(d)
    ]
    hide = [d for d in eligible if not any(d != o and d.is_relative_to(o) for o in eligible)]
    keep = sorted({p for p in forms if any(p.is_relative_to(d) for d in hide)})
    keep = [p for p in keep if not any(p != o and p.is_relative_to(o) for o in keep)]
    if not hide:
        return Hiding([], [], Measure(False, f"{Path.home()} holds the run's own paths"))
    shown = ", ".join(map(str, hide))
    measure = Measure(True, f"{shown} hidden (only the model's own paths in it are visible)")
    return Hiding(hide, keep, measure, [b for b in blocked if b in hide])


def _user_measure(paths: Sequence[Path], hiding: Hiding) -> Measure:
    """Whether the model can run as ``nobody``: only as root, and only where nobody can read
    the model and the environment (a 0700 directory on the way keeps it out, unless it is
    hidden and the needed paths mounted back into an open one). Files of the model closed to
    others never keep the run as root (a model could ship one to get root): the caller runs a
    copy opened to reading (:func:`readable_copy`)."""
    if os.geteuid() != 0:
        return Measure(True, f"runs as this user (uid {os.geteuid()}), not root")
    if _setpriv() is None:
        return Measure(False, "runs as root: setpriv (util-linux) is not installed")
    for path in paths:
        blocked = _unreadable_for_others(path, opened=hiding.blocked)
        if blocked is not None:
            return Measure(
                False, f"runs as root: {blocked} is not readable by an unprivileged user"
            )
    return Measure(True, f"runs as nobody (uid {NOBODY}), not root")


def closed_files_inside(directory: Path) -> list[Path]:
    """The files and directories under ``directory`` that others cannot read (or enter):
    safetensors writes its weights 0600, so MLflow's transformers models have some."""
    closed = []
    for root, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            path = Path(root, name)
            if path.is_symlink():
                continue
            needed = 0o005 if path.is_dir() else 0o004
            if path.stat().st_mode & needed != needed:
                closed.append(path)
    return closed


def drops_root(policy: ContainmentPolicy) -> bool:
    """Whether a contained run may switch to ``nobody`` (envkit runs as root, setpriv exists)."""
    return policy.enabled and os.geteuid() == 0 and _setpriv() is not None


def readable_copy(model_dir: Path, target: Path) -> Path:
    """A copy of ``model_dir`` at ``target`` (a new directory) that others can read: what a
    contained run as ``nobody`` loads when the model has files closed to others. The copy's
    parents are opened to entering; symlinks stay links (the model's own are checked before)."""
    shutil.copytree(model_dir, target, symlinks=True)
    target.parent.chmod(0o755)
    for root, _dirs, files in os.walk(target):
        Path(root).chmod(0o755)
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o444)
    return target


def _first_blocked(path: Path) -> Path | None:
    """The first directory on ``path``'s way that others cannot enter (``path`` excluded)."""
    for part in reversed(path.resolve().parents):
        if part.stat().st_mode & 0o001 != 0o001:
            return part
    return None


def _unreadable_for_others(path: Path, opened: Sequence[Path] = ()) -> Path | None:
    """The first directory on ``path``'s way (or ``path``) others cannot enter or read; the
    ``opened`` directories (hidden, rebuilt open) and what lies between them and ``path``
    do not count."""
    current = path.resolve()
    for part in [*reversed(current.parents), current]:
        if part != current and any(part.is_relative_to(o) for o in opened):
            continue
        mode = part.stat().st_mode
        needed = 0o005 if part.is_dir() else 0o004
        if mode & needed != needed:
            return part
    return None


def _hand_to_nobody(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(path):
        for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
            os.chown(name, NOBODY, NOBODY)


@functools.lru_cache(maxsize=1)
def _setpriv() -> str | None:
    return shutil.which("setpriv")


def _limits(policy: ContainmentPolicy) -> dict[int, int]:
    if sys.platform != "linux":
        return {}
    import resource

    wanted = {
        resource.RLIMIT_AS: policy.memory_bytes,
        resource.RLIMIT_CPU: policy.cpu_seconds,
        resource.RLIMIT_FSIZE: policy.file_size_bytes,
        resource.RLIMIT_NPROC: policy.processes,
    }
    return {key: value for key, value in wanted.items() if value is not None}


def _describe_limits(policy: ContainmentPolicy) -> str:
    parts = []
    if policy.memory_bytes is not None:
        parts.append(f"memory {policy.memory_bytes // 1024**2} MB")
    if policy.cpu_seconds is not None:
        parts.append(f"CPU {policy.cpu_seconds} s")
    if policy.file_size_bytes is not None:
        parts.append(f"file size {policy.file_size_bytes // 1024**2} MB")
    if policy.processes is not None:
        parts.append(f"{policy.processes} processes")
    return ", ".join(parts) or "none"
