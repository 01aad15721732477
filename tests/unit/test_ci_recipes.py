"""The CI recipes in examples/ci and the pre-commit hook definitions parse, and every envkit
command they run is one the CLI accepts (parsed by envkit's own parser, not run)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from envkit.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"


def _envkit_commands(lines: list[str]) -> list[list[str]]:
    commands = []
    for line in lines:
        for part in line.split("&&"):
            argv = shlex.split(part)
            if argv and argv[0] == "envkit":
                commands.append(argv[1:])
    return commands


def _accepted(argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"envkit {' '.join(argv)} is refused by the CLI (exit {exc.code})")


def test_the_github_workflow_runs_commands_that_exist():
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    steps = workflow["jobs"]["validate"]["steps"]
    commands = _envkit_commands([s["run"] for s in steps if "run" in s])
    assert [c[0] for c in commands] == ["deps", "matrix"]
    for argv in commands:
        _accepted(argv)


def test_the_gitlab_job_runs_commands_that_exist():
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["envkit-validate"]
    commands = _envkit_commands(job["before_script"] + job["script"])
    assert [c[0] for c in commands] == ["deps", "validate"]
    for argv in commands:
        _accepted(argv)


def test_the_pre_commit_hooks_call_the_hook_command_with_their_arguments():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"envkit-deps-check", "envkit-validate"}
    example = yaml.safe_load((CI / "pre-commit-config.yaml").read_text())
    configured = {h["id"]: h.get("args", []) for h in example["repos"][0]["hooks"]}
    assert set(configured) == set(hooks)
    for hook_id, hook in hooks.items():
        argv = shlex.split(hook["entry"])
        assert argv[0] == "envkit" and hook["language"] == "python"
        # pre-commit runs: entry, the hook's args, then the changed files
        _accepted([*argv[1:], *configured[hook_id], "models/iris/MLmodel"])


def test_the_hook_checks_each_model_once_and_a_metadata_copy_is_its_model(tmp_path):
    from envkit.cli.hook import model_dirs

    for model in ("a", "b"):
        (tmp_path / model / "metadata").mkdir(parents=True)
        (tmp_path / model / "MLmodel").write_text("flavors: {}\n")
        (tmp_path / model / "metadata" / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "elsewhere.txt").write_text("")
    files = [
        str(tmp_path / "a" / "metadata" / "MLmodel"),
        str(tmp_path / "a" / "MLmodel"),
        str(tmp_path / "b" / "metadata" / "MLmodel"),
        str(tmp_path / "elsewhere.txt"),
    ]
    assert model_dirs(files) == [tmp_path / "a", tmp_path / "b"]
