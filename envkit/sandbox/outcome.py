"""What a run of the in-environment runner means: its result copied into the report, and a
failure the runner caught put into words (on its stage and kind, which the runner reports as
data)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envkit.errors import EnvkitError
    from envkit.sandbox.report import ValidationReport

# Terminal colour and cursor sequences (CSI, OSC and two-byte escapes): never copied into a
# report.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")

# The runner's stages, as a report names them.
STAGE_WORDS = {
    "load": "loading the model",
    "input": "reading the input",
    "predict": "predict",
    "stream": "predict_stream",
    "output": "writing the predictions",
}
# A failure caught at a stage (kind: the stage itself, or a kind in _KIND_TEXT), in words.
_STAGE_TEXT = {
    "load": "loading the model failed: {etype}: {message}",
    "input": "reading the input failed: {etype}: {message}",
    "stream": "predict_stream raised {etype}: {message}",
    "output": "the predictions cannot be written as JSON: {message}",
}
_KIND_TEXT = {
    ("import", True): (
        "{what} failed: {etype}: {message}; the environment holds only the model's recorded "
        "requirements: add the missing package to them (or try --override PACKAGE)"
    ),
    ("import", False): (
        "{what} failed: {etype}: {message}; the {backend} backend uses this interpreter's "
        "packages: install the missing package here, or validate in a rebuilt environment "
        "(--env-manager uv)"
    ),
    ("schema", True): (
        "the input does not match the model signature: {message}; fix the input example or "
        "the signature"
    ),
}

# Modules a build tool dropped that older models still import, by the module's name (data the
# runner reports), with what to do.
_REMOVED_MODULES = {
    "pkg_resources": (
        "setuptools 81 and later no longer ship pkg_resources, which this model's code or "
        "libraries import: validate with --override 'setuptools<81' (and pin it in the "
        "model's requirements)"
    ),
}


def failure_text(error: Mapping[str, Any], *, isolated: bool, backend: str) -> str:
    """The report's one line for a failure the runner caught (``error`` is the runner's)."""
    stage = str(error.get("stage", "?"))
    kind = str(error.get("kind", stage))
    words = {
        "what": STAGE_WORDS.get(stage, "the model"),
        "etype": str(error.get("type", "Exception")).rsplit(".", 1)[-1],
        "message": strip_ansi(str(error.get("message", "unknown error"))),
        "backend": backend,
    }
    if kind == "import" and isolated and error.get("module") in _REMOVED_MODULES:
        return "{what} failed: {etype}: {message}; {hint}".format(
            hint=_REMOVED_MODULES[str(error["module"])], **words
        )
    template = _KIND_TEXT.get((kind, isolated if kind == "import" else True))
    if template is None:
        template = _STAGE_TEXT.get(stage, "predict raised {etype}: {message}")
    return template.format(**words)


def network_text(records: list[dict[str, str]], stage: str | None = None) -> str:
    """The hosts the model reached for (at ``stage``, or at any), as a report names them."""
    hosts = sorted({r["host"] for r in records if stage is None or r["stage"] == stage})
    shown = ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more" if len(hosts) > 5 else "")
    return shown


def network_failure_text(error: Mapping[str, Any], records: list[dict[str, str]]) -> str:
    """The one line for a model that failed after reaching for the network (the runner's
    audit records, not its message, say so): validate runs it with no network."""
    stage = str(error.get("stage", "?"))
    hosts = network_text(records, stage) or network_text(records)
    return (
        f"{STAGE_WORDS.get(stage, 'the model')} failed after the model tried to reach the "
        f"network ({hosts}): validate runs it with no network, as a deployment may have. Save "
        "what it downloads inside the model (artifacts), or pass --no-contain to allow the "
        f"network; {str(error.get('type', 'Exception')).rsplit('.', 1)[-1]}: "
        f"{strip_ansi(str(error.get('message', 'unknown error')))}"
    )


def absorb_result(report: ValidationReport, data: Mapping[str, Any]) -> None:
    """Copy what the runner reported (``result.json``) into ``report``."""
    for name in ("load", "input", "predict", "stream"):
        if name in (data.get("timings") or {}):
            report.timings[name] = float(data["timings"][name])
    report.loader = data.get("loader")
    report.input = data.get("input")
    report.output = data.get("output")
    if report.output and isinstance(report.output.get("preview"), str):
        report.output["preview"] = strip_ansi(report.output["preview"])
    report.stream = data.get("stream")
    report.mismatches = list(data.get("mismatches") or [])
    if "unrequested" in data:
        report.unrequested = [str(name) for name in data["unrequested"]]
    report.warnings.extend(strip_ansi(str(w)) for w in data.get("warnings") or [])
    report.network = [
        {"stage": str(r.get("stage", "?")), "host": strip_ansi(str(r.get("host", "?")))}
        for r in data.get("network") or []
        if isinstance(r, Mapping)
    ]
    if data.get("python"):
        _ran_with(report, str(data["python"]))


def _ran_with(report: ValidationReport, running: str) -> None:
    """The Python the runner ran: the report names it, and a mismatch with the recorded one."""
    from envkit.sandbox.provision import same_version

    interp = report.interpreter
    interp["version"] = interp["running"] = running
    recorded = str(interp.get("recorded") or "")
    interp["exact"] = not recorded or same_version(recorded, running)
    if recorded and not same_version(recorded, running):
        report.mismatches.insert(
            0,
            {
                "requirement": f"python=={recorded}",
                "installed": running,
                "problem": f"Python {running} runs the model",
            },
        )


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour and cursor sequences."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def with_hint(exc: EnvkitError, message: str) -> str:
    """``message`` with what to do next, chosen on the installer step that failed and why
    (data the backend attached), never on the message's wording."""
    from envkit.errors import SubprocessError
    from envkit.sandbox.backends.base import CAUSE_HASH_MISMATCH, STEP_BUILD_DEPENDENCIES

    if not isinstance(exc, SubprocessError) or exc.step is None:
        return message
    if exc.step == STEP_BUILD_DEPENDENCIES:
        return message.rstrip(".") + (
            "; the build dependencies python_env.yaml records cannot be installed for this "
            "Python (try another --python)"
        )
    if exc.cause == CAUSE_HASH_MISMATCH:
        what, _, why = message.partition(" failed: ")
        why = why if len(why) <= 120 else why[:117] + "..."
        return (
            f"{what} failed: a downloaded file does not match its hash in requirements.lock "
            "(if the package was re-published legitimately, lock again: envkit lock MODEL; "
            f"otherwise find out why before deploying): {why}"
        )
    return message.rstrip(".") + "; check the requirement names and versions, or try --override REQ"
