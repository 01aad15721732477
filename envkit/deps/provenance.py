"""Where each requirement came from: ``requirements.provenance.json``.

For every requirement: the installed version, its local version label (``+cpu``, kept in the
pin), how the distribution was installed (from an index, editable, a VCS URL, a local path or
archive; read from its ``direct_url.json``), the index URL the environment was configured with
(credentials stripped), and why it is a requirement (inferred from imports, the flavor, the user).
"""

from __future__ import annotations

import configparser
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from envkit.errors import ModelFormatError

PROVENANCE_FILE = "requirements.provenance.json"
PROVENANCE_FORMAT = 1
DEFAULT_INDEX_URL = "https://pypi.org/simple"

# How a distribution was installed.
INSTALL_INDEX = "index"
INSTALL_EDITABLE = "editable"
INSTALL_VCS = "vcs"
INSTALL_LOCAL = "local"  # a local directory (not editable)
INSTALL_ARCHIVE = "archive"  # a wheel/sdist file or URL
INSTALL_UNKNOWN = "unknown"  # not installed here

# Why a line is in requirements.txt.
SOURCE_INFERRED = "inferred"  # imported while the model loaded / predicted
SOURCE_FLAVOR = "flavor"  # what the flavor needs to load (always included)
SOURCE_USER = "user"  # pip_requirements / extra_pip_requirements / update_model_requirements
SOURCE_ENVKIT = "envkit"  # what envkit itself needs at predict (pandas/numpy for a signature)
# The capture's status: it ran all the way, it could not (see the reason), or it did not run.
CAPTURE_OK = "ok"
CAPTURE_PARTIAL = "partial"
CAPTURE_SKIPPED = "skipped"

SOURCE_STATIC = "static"  # referenced by the model's code or pickles, read without running them


def strip_credentials(url: str) -> str:
    """``url`` without ``user:password@`` and without a query string or fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class IndexConfig:
    """The package index this environment installs from (pip's configuration, uv's variables)."""

    index_url: str = DEFAULT_INDEX_URL
    extra_index_urls: tuple[str, ...] = ()
    # pip's --find-links (directories or URLs): a build with a local version label (torch
    # 2.13.0+cpu) may have come from one; recorded, never written into requirements.txt.
    find_links: tuple[str, ...] = ()

    def remote_extra_indexes(self) -> tuple[str, ...]:
        """The extra indexes another machine could reach (http/https, not ``file://``)."""
        return tuple(u for u in self.extra_index_urls if u.startswith(("http://", "https://")))

    @classmethod
    def current(cls) -> IndexConfig:
        """Read pip's config files and the PIP_/UV_ variables; credentials are stripped."""
        index: str | None = None
        extras: list[str] = []
        links: list[str] = []
        parser = configparser.RawConfigParser()
        for path in _pip_config_files():
            try:
                parser.read(path, encoding="utf-8")
            except (configparser.Error, OSError, UnicodeDecodeError):
                continue
        for section in ("global", "install"):
            if parser.has_option(section, "index-url"):
                index = parser.get(section, "index-url").strip() or index
            if parser.has_option(section, "extra-index-url"):
                extras = parser.get(section, "extra-index-url").split()
            if parser.has_option(section, "find-links"):
                links = parser.get(section, "find-links").split()
        for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
            value = os.environ.get(name, "").strip()
            if value:
                index = value
        for name in ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX"):
            value = os.environ.get(name, "").strip()
            if value:
                extras = value.split()
        for name in ("PIP_FIND_LINKS", "UV_FIND_LINKS"):
            value = os.environ.get(name, "").strip()
            if value:
                links = value.replace(",", " ").split()
        return cls(
            index_url=strip_credentials(index or DEFAULT_INDEX_URL),
            extra_index_urls=tuple(strip_credentials(u) for u in extras),
            find_links=tuple(strip_credentials(u) for u in links),
        )


def _pip_config_files() -> list[str]:
    """pip's config files, lowest precedence first (global, user, site); PIP_CONFIG_FILE last.
    ``PIP_CONFIG_FILE=/dev/null`` means none at all, as for pip."""
    if os.environ.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    files: list[str] = []
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files.extend(os.path.join(d, "pip", "pip.conf") for d in xdg_dirs if d)
    files.append("/etc/pip.conf")
    home = os.path.expanduser("~")
    files.append(os.path.join(home, ".pip", "pip.conf"))
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files.append(os.path.join(config_home, "pip", "pip.conf"))
    files.append(os.path.join(sys.prefix, "pip.conf"))
    explicit = os.environ.get("PIP_CONFIG_FILE")
    if explicit and explicit != os.devnull:
        files.append(explicit)
    return [f for f in files if os.path.isfile(f)]


@dataclass(frozen=True)
class InstallInfo:
    """How one distribution was installed (from its ``direct_url.json``)."""

    kind: str
    url: str | None = None
    editable_dir: str | None = None


def install_info(dist: Any) -> InstallInfo:
    """Classify an ``importlib.metadata.Distribution`` by its PEP 610 ``direct_url.json``."""
    try:
        text = dist.read_text("direct_url.json")
    except Exception:
        text = None
    if not text:
        return InstallInfo(INSTALL_INDEX)
    try:
        data = json.loads(text)
    except ValueError:
        return InstallInfo(INSTALL_INDEX)
    url = str(data.get("url") or "")
    if "vcs_info" in data:
        vcs = data["vcs_info"] or {}
        ref = vcs.get("commit_id") or vcs.get("requested_revision")
        full = f"{vcs.get('vcs', 'git')}+{strip_credentials(url)}" + (f"@{ref}" if ref else "")
        return InstallInfo(INSTALL_VCS, url=full)
    dir_info = data.get("dir_info")
    if dir_info is not None:
        local = _file_url_path(url)
        if dir_info.get("editable"):
            return InstallInfo(INSTALL_EDITABLE, url=strip_credentials(url), editable_dir=local)
        return InstallInfo(INSTALL_LOCAL, url=strip_credentials(url))
    if "archive_info" in data:
        return InstallInfo(INSTALL_ARCHIVE, url=strip_credentials(url))
    return InstallInfo(INSTALL_INDEX)


def _file_url_path(url: str) -> str | None:
    if not url.startswith("file://"):
        return None
    from urllib.parse import unquote

    return unquote(urlsplit(url).path) or None


@dataclass
class RequirementProvenance:
    """One requirement line and where it came from."""

    requirement: str
    name: str | None
    source: str
    installed_version: str | None = None
    local_label: str | None = None
    install: str = INSTALL_UNKNOWN
    index_url: str | None = None
    url: str | None = None
    modules: list[str] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from envkit._subprocess import redact_url

        data = {k: v for k, v in asdict(self).items() if v not in (None, [])}
        # The provenance never repeats credentials a requirement line carries.
        for key in ("requirement", "url"):
            if key in data:
                data[key] = redact_url(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequirementProvenance:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known.setdefault("requirement", "")
        known.setdefault("name", None)
        known.setdefault("source", SOURCE_INFERRED)
        return cls(**known)


@dataclass
class CaptureRecord:
    """How the requirements were decided."""

    status: str  # "ok" | "partial" (see reason) | "skipped"
    reason: str | None = None
    seconds: float | None = None
    predicted: bool = False
    # Distributions the static pass added (read from the model's code and pickles).
    static: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != []}


@dataclass
class Provenance:
    """The content of ``requirements.provenance.json``."""

    requirements: list[RequirementProvenance]
    capture: CaptureRecord
    python: str = ""
    envkit_version: str = ""
    index: IndexConfig = field(default_factory=IndexConfig)
    env_vars: list[str] = field(default_factory=list)
    unresolved_modules: list[str] = field(default_factory=list)

    def by_name(self) -> dict[str, RequirementProvenance]:
        from packaging.utils import canonicalize_name

        return {canonicalize_name(r.name): r for r in self.requirements if r.name}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": PROVENANCE_FORMAT,
            "envkit_version": self.envkit_version,
            "python": self.python,
            "index_url": self.index.index_url,
            "extra_index_urls": list(self.index.extra_index_urls),
            "find_links": list(self.index.find_links),
            "capture": self.capture.to_dict(),
            "requirements": [r.to_dict() for r in self.requirements],
            "unresolved_modules": list(self.unresolved_modules),
            "env_vars": list(self.env_vars),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        capture = data.get("capture") or {}
        return cls(
            requirements=[
                RequirementProvenance.from_dict(r)
                for r in data.get("requirements") or []
                if isinstance(r, dict)
            ],
            capture=CaptureRecord(
                status=str(capture.get("status", "unknown")),
                reason=capture.get("reason"),
                seconds=capture.get("seconds"),
                predicted=bool(capture.get("predicted", False)),
                static=[str(n) for n in capture.get("static") or []],
            ),
            python=str(data.get("python") or ""),
            envkit_version=str(data.get("envkit_version") or ""),
            index=IndexConfig(
                index_url=str(data.get("index_url") or DEFAULT_INDEX_URL),
                extra_index_urls=tuple(data.get("extra_index_urls") or ()),
                find_links=tuple(str(u) for u in data.get("find_links") or ()),
            ),
            env_vars=[str(n) for n in data.get("env_vars") or []],
            unresolved_modules=[str(n) for n in data.get("unresolved_modules") or []],
        )


def write_provenance(model_dir: str | os.PathLike[str], provenance: Provenance) -> None:
    (Path(model_dir) / PROVENANCE_FILE).write_text(provenance.to_json(), encoding="utf-8")


def read_provenance(model_dir: str | os.PathLike[str]) -> Provenance | None:
    """The model's provenance record, or None when it has none (e.g. written by MLflow)."""
    path = Path(model_dir) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} must hold a JSON object")
    return Provenance.from_dict(data)


def partial_capture_note(model_dir: str | os.PathLike[str]) -> str | None:
    """One line when the model's capture was ``partial`` (its input example could not run, or
    the capture process failed): what ``envkit validate`` reports; None otherwise."""
    try:
        provenance = read_provenance(model_dir)
    except ModelFormatError:
        return None
    if provenance is None or provenance.capture.status != CAPTURE_PARTIAL:
        return None
    reason = provenance.capture.reason or "the capture did not say why"
    return f"the model's requirements were captured without a prediction: {reason}"


def origin(r: RequirementProvenance) -> str:
    """Where one requirement came from: ``inferred from sklearn; index https://…``."""
    bits = [r.source + (f" from {', '.join(r.modules)}" if r.modules else "")]
    if r.install not in (INSTALL_INDEX, INSTALL_UNKNOWN):
        bits.append(f"{r.install} {r.url or ''}".strip())
    elif r.index_url:
        bits.append(f"index {r.index_url}")
    if r.local_label:
        bits.append(f"installed {r.installed_version}")
    if r.note:
        bits.append(r.note)
    return "; ".join(bits)
