"""Tests for `mta postconf`: flags, output format, -e editing, and -c / MAIL_CONFIG handling."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mta.cli import main

MAIN_CF = """\
# Gateway settings
myhostname = gw.example.com
myorigin = $mydomain

# Local names
mydestination = $myhostname,
    localhost.$mydomain,
    $mydomain
foo = bar # x
"""


@pytest.fixture()
def etc(tmp_path: Path) -> Path:
    (tmp_path / "main.cf").write_text(MAIN_CF)
    return tmp_path


def postconf(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_non_default_lists_main_cf_settings(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = postconf(capsys, "-c", str(etc), "postconf", "-n")
    assert status == 0
    assert out == (
        f"config_directory = {etc}\n"
        "mydestination = $myhostname, localhost.$mydomain, $mydomain\n"
        "myhostname = gw.example.com\n"
        "myorigin = $mydomain\n"
    )
    assert f"mta/postconf: warning: {etc}/main.cf: unused parameter: foo=bar # x" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "{etc}", "postconf", "-x", "mydestination"],
        ["postconf", "-c", "{etc}", "-x", "mydestination"],
        ["postconf", "-x", "-c", "{etc}", "mydestination"],
    ],
)
def test_config_dir_before_or_after_subcommand(
    etc: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, _ = postconf(capsys, *[a.format(etc=etc) for a in argv])
    assert status == 0
    assert out == "mydestination = gw.example.com, localhost.example.com, example.com\n"


def test_mail_config_environment(etc: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_CONFIG", str(etc))
    status, out, _ = postconf(capsys, "postconf", "-h", "myorigin")
    assert (status, out) == (0, "$mydomain\n")
    # -c wins over MAIL_CONFIG
    other = etc / "other"
    other.mkdir()
    (other / "main.cf").write_text("myorigin = other.example\n")
    status, out, _ = postconf(capsys, "postconf", "-c", str(other), "-h", "myorigin")
    assert out == "other.example\n"


def test_expanded_and_values_only(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = postconf(capsys, "-c", str(etc), "postconf", "-xh", "myorigin", "smtpd_banner")
    assert out == "example.com\ngw.example.com ESMTP Postfix\n"


def test_defaults_ignore_main_cf(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = postconf(capsys, "-c", str(etc), "postconf", "-d", "myorigin", "config_directory",
                         "smtpd_recipient_limit")
    assert out == "myorigin = $myhostname\nconfig_directory = /etc/postfix\nsmtpd_recipient_limit = 1000\n"


def test_all_parameters(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = postconf(capsys, "-c", str(etc), "postconf")
    lines = out.splitlines()
    assert len(lines) > 800
    assert lines == sorted(lines)
    assert "myorigin = $mydomain" in lines
    assert "smtpd_recipient_limit = 1000" in lines
    assert not any(line.startswith("foo ") for line in lines)


def test_unknown_and_undefined(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (etc / "main.cf").write_text("mydestination = $nosuch, x\n")
    status, out, err = postconf(capsys, "-c", str(etc), "postconf", "-x", "mydestination", "bogus_name")
    assert status == 0
    assert out == "mydestination = , x\n"
    assert "mta/postconf: warning: bogus_name: unknown parameter" in err
    assert f"mta/postconf: warning: {etc}/main.cf: undefined parameter: nosuch" in err


def test_missing_main_cf_is_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = postconf(capsys, "-c", str(tmp_path), "postconf", "-n")
    assert status == 1 and out == ""
    assert f"mta/postconf: fatal: open {tmp_path}/main.cf: No such file or directory" in err


def test_syntax_error_is_fatal_with_line(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (etc / "main.cf").write_text("myorigin = x\nmydestination x\n")
    status, out, err = postconf(capsys, "-c", str(etc), "postconf", "-n")
    assert status == 1 and out == ""
    assert f"fatal: {etc}/main.cf, line 2: missing '=' after attribute name" in err


def test_expansion_error_prints_nothing(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (etc / "main.cf").write_text("myorigin = ${mydomain\n")
    status, out, err = postconf(capsys, "-c", str(etc), "postconf", "-x", "mydestination", "myorigin")
    assert status == 1 and out == ""
    assert "truncated macro reference" in err


# -- -e / -X -------------------------------------------------------------------

def test_edit_replaces_in_place_and_appends(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (etc / "main.cf").write_text(MAIN_CF + "myorigin = again\n")
    os.chmod(etc / "main.cf", 0o640)
    status, _, _ = postconf(capsys, "-c", str(etc), "postconf", "-e",
                            "myorigin = $myhostname", "mydestination=localhost", "relayhost = [mx.internal]:25")
    assert status == 0
    assert (etc / "main.cf").read_text() == (
        "# Gateway settings\n"
        "myhostname = gw.example.com\n"
        "myorigin = $myhostname\n"
        "\n"
        "# Local names\n"
        "mydestination = localhost\n"
        "foo = bar # x\n"
        "myorigin = $myhostname\n"
        "relayhost = [mx.internal]:25\n"
    )
    assert stat.S_IMODE(os.stat(etc / "main.cf").st_mode) == 0o640
    assert sorted(p.name for p in etc.iterdir()) == ["main.cf"]


def test_edit_keeps_comments_inside_replaced_entry(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (etc / "main.cf").write_text("a = 1,\n# note\n  2\nb = 3\n")
    postconf(capsys, "-c", str(etc), "postconf", "-e", "a = 9")
    assert (etc / "main.cf").read_text() == "a = 9\n# note\nb = 3\n"


def test_remove(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    postconf(capsys, "-c", str(etc), "postconf", "-X", "mydestination", "foo")
    assert (etc / "main.cf").read_text() == (
        "# Gateway settings\nmyhostname = gw.example.com\nmyorigin = $mydomain\n\n# Local names\n")


def test_edit_creates_missing_main_cf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    postconf(capsys, "-c", str(tmp_path), "postconf", "-e", "myhostname = new.example")
    assert (tmp_path / "main.cf").read_text() == "myhostname = new.example\n"


@pytest.mark.parametrize(("arg", "message"), [("novalue", "missing '='"), ("= x", "missing attribute name")])
def test_bad_edit_leaves_file_untouched(etc: Path, capsys: pytest.CaptureFixture[str],
                                        arg: str, message: str) -> None:
    status, _, err = postconf(capsys, "-c", str(etc), "postconf", "-e", "myorigin = ok", arg)
    assert status == 1 and message in err
    assert (etc / "main.cf").read_text() == MAIN_CF


def test_edit_refuses_broken_main_cf(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (etc / "main.cf").write_text("broken line\n")
    status, _, err = postconf(capsys, "-c", str(etc), "postconf", "-e", "myorigin = x")
    assert status == 1 and "line 1: missing '='" in err
    assert (etc / "main.cf").read_text() == "broken line\n"


def test_help_explains_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["postconf", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("-n", "-d", "-x", "-e", "-M", "-h"):
        assert f"  {flag}" in out
