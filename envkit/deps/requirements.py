"""Requirements files as pip reads them: the one parser of requirement lines in envkit.

Logical lines (backslash continuations joined, comments dropped), option lines, ``-r`` includes
(followed) and ``-c`` constraints files (read), each relative to the file that names it. With a
``root`` (a model directory) an include that leaves it is refused. Used for what a user passes at
save time, for every file a model records (``requirements.txt``, the lists in
``python_env.yaml`` and ``conda.yaml``, ``requirements.lock``) and for what ``envkit`` edits.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from envkit.errors import EnvkitError, InvalidRequirementError

__all__ = [
    "CONSTRAINT_OPTIONS",
    "INCLUDE_OPTIONS",
    "RequirementLines",
    "RequirementsReader",
    "first_line",
    "logical_lines",
    "option_name",
    "option_value",
    "parse_requirement_line",
    "read_requirements_file",
    "requirement_name",
    "split_hashes",
]

INCLUDE_OPTIONS = ("-r", "--requirement")
CONSTRAINT_OPTIONS = ("-c", "--constraint")
# The options pip accepts at the start of a line of a requirements file (besides -r and -c).
KNOWN_OPTIONS = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "-f",
    "--find-links",
    "--no-binary",
    "--only-binary",
    "--prefer-binary",
    "--require-hashes",
    "--pre",
    "--trusted-host",
    "--use-feature",
    "-e",
    "--editable",
)


def first_line(text: str) -> str:
    """The first non-blank line of a (possibly multi-line) message."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(number of its first line, line) with backslash continuations joined."""
    result: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        result.append((start, pending + raw))
        pending = ""
    if pending:
        result.append((start, pending))
    return result


def parse_requirement_line(line: str, *, source: str = "requirement") -> str | None:
    """A normalized requirement string from one line, None for blanks/comments.

    Option lines (``-c``, ``-r``, ``--index-url`` ...) are returned as they are; everything else
    must parse as a PEP 508 requirement or a URL/path requirement (``--hash`` options kept).
    """
    from packaging.requirements import InvalidRequirement, Requirement

    text = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
    if not text:
        return None
    if text.startswith("-"):
        return text
    if "://" in text or text.startswith((".", "/")) or text.endswith((".whl", ".tar.gz", ".zip")):
        return text
    requirement, hashes = text, ""
    if " --hash" in text:  # pip's per-requirement hash options are kept as given
        requirement, _, rest = text.partition(" --hash")
        hashes = " --hash" + rest
    try:
        return str(Requirement(requirement.strip())) + hashes
    except InvalidRequirement as exc:
        # packaging's message repeats the line with a caret under it: keep its first line.
        raise InvalidRequirementError(
            f"invalid {source} {text!r}: {first_line(str(exc))}", requirement=text, source=source
        ) from exc


def requirement_name(line: str) -> str | None:
    """The canonical distribution name of a requirement line; None for option lines
    (``-c ...``) and lines that are not PEP 508 requirements (paths, URLs)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    if line.startswith("-"):
        return None
    try:
        return str(canonicalize_name(Requirement(line.split(" --hash", 1)[0]).name))
    except InvalidRequirement:
        return None


def option_name(line: str) -> str:
    """``--index-url`` of ``--index-url https://...`` or ``--index-url=https://...``."""
    head = line.split(None, 1)[0] if line.strip() else ""
    return head.split("=", 1)[0]


def option_value(line: str) -> str:
    """The argument of an option line (``constraints.txt`` of ``-c constraints.txt``)."""
    head, _, rest = line.strip().partition(" ")
    if "=" in head and not rest.strip():
        return head.split("=", 1)[1].strip()
    return rest.strip()


_HASH = re.compile(r"\s--hash[=\s](\S+)")


def split_hashes(line: str) -> tuple[str, tuple[str, ...]]:
    """(the line without its ``--hash`` options, the hashes): ``("a==1", ("sha256:…",))``."""
    hashes = tuple(_HASH.findall(" " + line))
    return _HASH.sub("", " " + line).strip(), hashes


@dataclass(frozen=True)
class RequirementLines:
    """What a list of requirement lines says, includes followed.

    ``lines`` holds the requirement and option lines in order, the lines of ``-r`` files in
    place of the ``-r`` line, ``-c`` lines kept; ``constraints`` the requirements of the ``-c``
    files (each once), read from ``constraint_files``.
    """

    lines: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    constraint_files: tuple[Path, ...] = ()

    @property
    def requirements(self) -> tuple[str, ...]:
        """The requirement lines (PEP 508, URLs, paths), without option lines."""
        return tuple(line for line in self.lines if not line.startswith("-"))

    @property
    def options(self) -> tuple[str, ...]:
        """The option lines (``--index-url``, ``-e`` ...), without ``-c`` lines."""
        return tuple(
            line
            for line in self.lines
            if line.startswith("-") and option_name(line) not in CONSTRAINT_OPTIONS
        )

    def without_constraint_lines(self) -> tuple[str, ...]:
        """Requirement and option lines in order, ``-c`` lines left out."""
        return tuple(line for line in self.lines if option_name(line) not in CONSTRAINT_OPTIONS)


class RequirementsReader:
    """Collects requirement lines from files and lists, following ``-r`` and reading ``-c``.

    ``label`` names a line in messages (``"invalid requirement in requirements.txt:3 ..."``).
    With ``root``, an include must stay inside that directory (``UnsafePathError``). Raises
    :class:`~envkit.errors.EnvkitError` for a file that cannot be read and a line that is not
    a requirement or a known pip option; with a ``problems`` list, those are appended to it
    (one line each) and the rest is read.
    """

    def __init__(
        self,
        *,
        root: Path | None = None,
        label: str = "requirement",
        problems: list[str] | None = None,
    ) -> None:
        self.root = root.resolve() if root is not None else None
        self.label = label
        self.problems = problems
        self._lines: list[str] = []
        self._constraints: list[str] = []
        self._constraint_files: list[Path] = []
        self._seen: set[Path] = set()

    def result(self) -> RequirementLines:
        return RequirementLines(
            tuple(self._lines), tuple(self._constraints), tuple(self._constraint_files)
        )

    def read_file(self, path: Path) -> None:
        """Add the lines of the requirements file at ``path``."""
        resolved = path.resolve()
        if resolved in self._seen:
            return
        self._seen.add(resolved)
        try:
            text = _read_text(path, "requirements file")
        except EnvkitError as exc:
            self._fail(exc)
            return
        for number, line in logical_lines(text):
            where = f"{path.name}:{number}"
            self.add(line, source=f"{self.label} in {where}", base=path.parent, where=where)

    def add(self, text: str, *, source: str, base: Path, where: str | None = None) -> None:
        """Add one line; ``source`` names it in messages, ``where`` (default ``source``) in
        those about the files it names; its ``-r``/``-c`` paths are relative to ``base``."""
        try:
            self._add(text, source=source, base=base, where=where or source)
        except EnvkitError as exc:
            self._fail(exc)

    def _add(self, text: str, *, source: str, base: Path, where: str) -> None:
        parsed = parse_requirement_line(text, source=source)
        if parsed is None:
            return
        if not parsed.startswith("-"):
            self._lines.append(parsed)
            return
        name = option_name(parsed)
        if name in INCLUDE_OPTIONS:
            self.read_file(self._path(base, option_value(parsed)))
            return
        if name in CONSTRAINT_OPTIONS:
            self._constraints_file(self._path(base, option_value(parsed)), where=where)
        elif name not in KNOWN_OPTIONS:
            raise InvalidRequirementError(
                f"invalid {source} {parsed!r}: unknown pip option {name!r}",
                requirement=parsed,
                source=source,
            )
        self._lines.append(parsed)

    def _constraints_file(self, path: Path, *, where: str) -> None:
        if not path.is_file():
            raise InvalidRequirementError(
                f"constraints file {path} (from {where}) does not exist", source=where
            )
        if path not in self._constraint_files:
            self._constraint_files.append(path)
        for number, line in logical_lines(_read_text(path, "constraints file")):
            self._add_constraint(line, source=f"constraint in {path.name}:{number}")

    def _add_constraint(self, line: str, *, source: str) -> None:
        try:
            parsed = parse_requirement_line(line, source=source)
            if parsed is not None and parsed.startswith("-"):
                raise InvalidRequirementError(
                    f"invalid {source} {parsed!r}: a constraints file holds requirements only",
                    requirement=parsed,
                    source=source,
                )
        except EnvkitError as exc:
            self._fail(exc)
            return
        if parsed is not None and parsed not in self._constraints:
            self._constraints.append(parsed)

    def _path(self, base: Path, value: str) -> Path:
        """``value`` relative to ``base``; inside ``root`` when there is one."""
        if self.root is None:
            return base / value
        from envkit._fs import resolve_inside

        base = base.resolve()
        if os.path.isabs(value) or base == self.root:
            return resolve_inside(self.root, value)
        return resolve_inside(self.root, os.path.join(os.path.relpath(base, self.root), value))

    def _fail(self, exc: EnvkitError) -> None:
        if self.problems is None:
            raise exc
        self.problems.append(exc.message)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequirementError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidRequirementError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise InvalidRequirementError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidRequirementError(f"{what} {path} is not UTF-8 text") from None


def read_requirements_file(
    path: str | os.PathLike[str],
    *,
    root: Path | None = None,
    problems: list[str] | None = None,
) -> list[str]:
    """The requirement and option lines of ``path`` (see :class:`RequirementsReader`)."""
    reader = RequirementsReader(root=root, problems=problems)
    reader.read_file(Path(path))
    return list(reader.result().lines)
