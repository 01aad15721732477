"""Redaction rules (envkit._redact): every environment value longer than 6 characters (paths
and a few settings excepted) and every URL password, wherever they appear."""

from __future__ import annotations

from envkit._redact import Redactor, redact_data


def test_values_of_any_name_are_redacted_not_only_secret_looking_ones():
    redactor = Redactor({"DATABASE_URL": "postgresql://u:PASSWORD@h/db", "FLAG": "abcdefgh"})
    text = redactor("dsn=postgresql://u:PASSWORD@h/db flag=abcdefgh")
    assert "PASSWORD" not in text and "abcdefgh" not in text


def test_short_values_paths_and_settings_are_kept():
    environ = {"SHORT": "abc123", "HOME": "/root", "PATH": "/usr/bin:/bin", "TERM": "xterm-256"}
    redactor = Redactor(environ)
    assert redactor("abc123 /usr/bin:/bin xterm-256") == "abc123 /usr/bin:/bin xterm-256"


def test_url_passwords_are_masked_and_placeholders_kept():
    redactor = Redactor({})
    assert redactor("https://me:hunter22@idx/simple") == "https://***@idx/simple"
    kept = "https://${INDEX_USER}:${INDEX_PASSWORD}@idx/simple"
    assert redactor(kept) == kept


def test_data_is_redacted_recursively():
    redactor = Redactor({"TOKEN": "tok-123456789"})
    data = {"a": ["x tok-123456789", {"b": "tok-123456789"}], "n": 3}
    assert redact_data(data, redactor) == {"a": ["x ***", {"b": "***"}], "n": 3}


def test_the_cli_redacts_what_it_prints(tmp_path, capsys, monkeypatch):
    """A model path that contains a secret value is still not printed (stdout and stderr)."""
    from envkit.cli import main

    monkeypatch.setenv("ENVKIT_T_SECRET", "zz-secret-value")
    assert main(["info", str(tmp_path / "zz-secret-value")]) == 2
    captured = capsys.readouterr()
    assert "zz-secret-value" not in captured.out + captured.err
    assert "***" in captured.err


def test_local_urls_are_paths_and_kept():
    environ = {"DOCKER_HOST": "unix:///run/docker.sock", "PIP_FIND_LINKS": "file:///opt/wheels"}
    redactor = Redactor(environ)
    assert redactor("unix:///run/docker.sock file:///opt/wheels") == (
        "unix:///run/docker.sock file:///opt/wheels"
    )
