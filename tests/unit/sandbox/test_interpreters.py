"""Interpreter discovery: exact first, then the same minor version, else a clear error."""

from __future__ import annotations

import platform
import sys

import pytest

from envkit.errors import InterpreterNotFoundError, UsageError
from envkit.sandbox.interpreters import available_interpreters, find_interpreter


def test_the_exact_version_is_found_without_a_warning():
    match = find_interpreter(platform.python_version())
    assert match.exact and match.warning is None
    assert match.interpreter.version == platform.python_version()


def test_a_missing_patch_falls_back_to_the_same_minor_with_a_warning():
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    match = find_interpreter(f"{minor}.99")
    assert not match.exact
    assert match.interpreter.minor == minor
    assert match.warning is not None and match.warning.startswith(f"Python {minor}.99 is not")


def test_a_minor_version_request_is_exact():
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    match = find_interpreter(minor)
    assert match.exact and match.interpreter.version.startswith(minor + ".")


def test_an_unavailable_version_lists_what_was_found():
    with pytest.raises(InterpreterNotFoundError) as info:
        find_interpreter("3.1.4")
    message = str(info.value)
    assert message.startswith("no Python 3.1.4 found")
    assert platform.python_version() in message
    assert "pyenv install 3.1" in message and "--python X.Y" in message
    assert info.value.exit_code == 3


@pytest.mark.parametrize("bad", ["three", "banana", "3", ""])
def test_a_bad_version_is_a_usage_error(bad):
    with pytest.raises(UsageError) as info:
        find_interpreter(bad)
    assert info.value.exit_code == 2


def test_available_interpreters_include_this_one():
    versions = {i.version for i in available_interpreters()}
    assert platform.python_version() in versions
