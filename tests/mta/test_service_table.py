"""Tests for mta.service_table: master.cf parsing as master(8) does.

Error messages are master(8)'s, observed by running the real 3.7.11 master. Printing
(``postconf -M``) is tested in test_service_format.py, inet service names in
test_service_address.py.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.errors import ConfigError
from mta.service_format import format_row
from mta.service_table import (
    ServiceRow,
    compatibility_chroot,
    daemon_operands,
    delivers_locally,
    find,
    logical_lines,
    parse_master_cf,
    parse_master_text,
    row_parse,
    select_rows,
)

PATH = "/etc/postfix/master.cf"
GOLDEN = Path(__file__).parent / "golden" / "service_table"
SEED = GOLDEN / "seed_example_7_20.in"


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """Collect the mta logger's warnings, whatever handlers other tests installed."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("mta")
    handler = Collect(level=logging.WARNING)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def parse(text: str, **kwargs: object) -> list[ServiceRow]:
    return parse_master_text(text, PATH, **kwargs)  # type: ignore[arg-type]


def one(text: str, **kwargs: object) -> ServiceRow:
    rows = parse(text, **kwargs)
    assert len(rows) == 1
    return rows[0]


# ---------------------------------------------------------------- bad rows

# (text, line reported, reason). Every reason but those marked "daemon" or "postconf"
# is the real master(8)'s text for the same input.
BAD_ROWS = [
    ("foo\n", 1, 'missing "transport type" field'),
    ("foo unix\n", 1, 'missing "private" field'),
    ("foo unix - -\n", 1, 'missing "chroot" field'),
    ("foo unix - - n - -\n", 1, 'missing "command" field'),
    ("foo - - - n - - cmd\n", 1, 'field "transport type" has no default value'),
    ("foo bogus - - n - - cmd\n", 1, "bad transport type: bogus"),
    ("foo UNIX - - n - - cmd\n", 1, "bad transport type: UNIX"),
    ("foo unix x - n - - cmd\n", 1, 'field "private": bad value: "x"'),
    ("foo unix - yes n - - cmd\n", 1, 'field "unprivileged": bad value: "yes"'),
    ("foo unix - - Y - - cmd\n", 1, 'field "chroot": bad value: "Y"'),
    ("foo unix - - n ? - cmd\n", 1, 'field "wakeup_time": bad value: "?"'),
    ("foo unix - - n -? - cmd\n", 1, 'field "wakeup_time": bad value: "-?"'),
    ("foo unix - - n -1 - cmd\n", 1, 'field "wakeup_time": bad value: "-1"'),
    # postconf refuses junk after the number; master(8)'s atoi() would read 10.
    ("foo unix - - n 10x - cmd\n", 1, 'field "wakeup_time": bad value: "10x"'),
    ("foo unix - - n 10?? - cmd\n", 1, 'field "wakeup_time": bad value: "10??"'),
    ("foo unix - - n - -1 cmd\n", 1, 'field "max_proc": bad value: "-1"'),
    ("foo unix - - n - 1? cmd\n", 1, 'field "max_proc": bad value: "1?"'),
    ("foo unix - - n - 1x cmd\n", 1, 'field "max_proc": bad value: "1x"'),
    ("foo unix - - n - - -\n", 1, 'field "command" has no default value'),
    ("smtp inet - - n - - smtpd\n", 1, "inet service cannot be private"),
    ("smtp inet y - n - - smtpd\n", 1, "inet service cannot be private"),
    ("127.0.0.1: inet n - n - - smtpd\n", 1, 'missing service information in "127.0.0.1:"'),
    ("[127.0.0.1 inet n - n - - smtpd\n", 1, 'missing "]" in "[127.0.0.1"'),
    ("[127.0.0.1]x inet n - n - - smtpd\n", 1, 'garbage after "]" in "[127.0.0.1]x"'),
    ("[ipv6:1.2.3.4]:25 inet n - n - - smtpd\n", 1, 'malformed IPv6 address in "[ipv6:1.2.3.4]:25"'),
    ("bad_host!:25 inet n - n - - smtpd\n", 1,
     'valid hostname or network address required in "bad_host!:25"'),
    ("127.0.0.1:25x inet n - n - - smtpd\n", 1, 'garbage after numerical service in "127.0.0.1:25x"'),
    ("foo unix - - n - - cmd { unbalanced\n", 1, "missing '}' in \"{ unbalanced\""),
    ("foo unix - - n - - cmd {a}b\n", 1, "syntax error after '}' in \"{a}b\""),
    # daemon: what every Postfix daemon says at start-up about its -o options.
    ("foo unix - - n - - cmd -o bad\n", 1,
     "invalid \"-o bad\" option value: missing '=' after attribute name"),
    ("foo unix - - n - - cmd -o { bad }\n", 1,
     "invalid \"-o bad\" option value: missing '=' after attribute name"),
    ("foo unix - - n - - cmd -o {=x}\n", 1, 'invalid "-o =x" option value: missing attribute name'),
    ("foo unix - - n - - cmd -v -o\n", 1, "option requires an argument -- 'o'"),
    # The line reported is the first line of the logical line (master(8) does the same).
    ("# c\n\nfoo unix - - n\n\n  # x\n  ? - cmd\n", 3, 'field "wakeup_time": bad value: "?"'),
    ("good unix - - n - - cmd\n\nbad unix - - n - -\n", 3, 'missing "command" field'),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD_ROWS,
                         ids=[f"{i}-{reason}" for i, (_, _, reason) in enumerate(BAD_ROWS)])
def test_bad_row(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert str(info.value) == f"{PATH}, line {line}: {reason}"
    assert (info.value.path, info.value.line, info.value.reason) == (PATH, line, reason)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "master.cf"
    with pytest.raises(ConfigError, match=rf"^open {missing}: No such file or directory$"):
        parse_master_cf(missing)


# ---------------------------------------------------------------- columns and defaults

@pytest.mark.parametrize(("level", "chroot"), [
    ("0", True), (0, True), ("0.9", True), ("1", False), (2, False), ("3.6", False), ("3.6.1", False),
])
def test_chroot_default_follows_compatibility_level(level: str | int, chroot: bool) -> None:
    assert compatibility_chroot(level) is chroot
    assert one("foo unix - - - - - cmd\n", compatibility_level=level).chroot is chroot
    # An explicit value is not touched by the level.
    assert one("foo unix - - y - - cmd\n", compatibility_level=level).chroot is True
    assert one("foo unix - - n - - cmd\n", compatibility_level=level).chroot is False


@pytest.mark.parametrize("level", ["", "3.x", "level 2", "1.2.3.4"])
def test_bad_compatibility_level(level: str) -> None:
    with pytest.raises(ConfigError, match="bad compatibility_level value"):
        compatibility_chroot(level)


@pytest.mark.parametrize(("columns", "private", "unpriv"), [
    ("- -", True, True), ("n -", False, True), ("y n", True, False), ("n y", False, True),
])
def test_private_and_unpriv(columns: str, private: bool, unpriv: bool) -> None:
    row = one(f"foo unix {columns} n - - cmd\n")
    assert (row.private, row.unpriv) == (private, unpriv)
    assert row.raw[2:4] == tuple(columns.split())


@pytest.mark.parametrize(("text", "seconds", "conditional"), [
    ("-", 0, False), ("0", 0, False), ("60", 60, False), ("1000?", 1000, True),
    # master(8) sets the conditional flag only for a non-zero timer.
    ("0?", 0, False),
])
def test_wakeup(text: str, seconds: int, conditional: bool) -> None:
    row = one(f"flush unix n - n {text} 0 flush\n")
    assert (row.wakeup, row.wakeup_conditional, row.raw[5]) == (seconds, conditional, text)


@pytest.mark.parametrize(("text", "limit", "maxproc"), [
    ("-", 100, 100), ("-", 7, 7), ("0", 100, 0), ("1", 100, 1), ("25", 3, 25),
])
def test_maxproc(text: str, limit: int, maxproc: int) -> None:
    assert one(f"foo unix - - n - {text} cmd\n", default_process_limit=limit).maxproc == maxproc


@pytest.mark.parametrize("kind", ["unix", "unix-dgram", "fifo", "pass"])
def test_service_types(kind: str) -> None:
    row = one(f"foo {kind} - - n - 1 cmd\n")
    assert (row.type, row.private, row.endpoint) == (kind, True, "private/foo")


# ---------------------------------------------------------------- logical lines

def test_comments_and_blank_lines_do_not_end_a_logical_line() -> None:
    text = ("# head\n"
            "   # indented comment\n"
            "foo unix - - n - - cmd\n"
            "\n"
            "  # comment inside the entry\n"
            "\t a1\n"
            "   \n"
            "   a2\n"
            "bar unix - - - - -\n"
            "  baz # not a comment\n")
    assert list(logical_lines(text, PATH)) == [
        (3, "foo unix - - n - - cmd\t a1   a2"),
        (9, "bar unix - - - - -  baz # not a comment"),
    ]
    foo, bar = parse(text)
    assert (foo.line, foo.command, foo.args) == (3, "cmd", ("a1", "a2"))
    assert (bar.line, bar.command, bar.args) == (9, "baz", ("#", "not", "a", "comment"))


def test_continuation_keeps_its_whitespace_inside_braces() -> None:
    # readllines() concatenates the pieces as they are; postconf -M shows the same.
    row = one("foo unix - - n - - cmd -o { smtpd_banner = $myhostname\n        ESMTP }\n")
    assert row.overrides == {"smtpd_banner": "$myhostname        ESMTP"}


def test_leading_continuation_is_dropped_with_a_warning(warnings: list[str]) -> None:
    rows = parse("  orphan unix - - n - - cmd and a long tail\n  more\nbar unix - - n - - cmd\n")
    assert [row.service for row in rows] == ["bar"]
    assert warnings == [f'{PATH}, line 1: logical line must not start with whitespace: '
                        f'"  orphan unix - - n - - cmd an..."']


def test_crlf_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "master.cf"
    path.write_bytes(b"smtp inet n - y - - smtpd\r\n  -o a=b\r\n\r\n#c\r\npickup unix n - y 60 1 pickup\r\n")
    smtp, pickup = parse_master_cf(path)
    assert (smtp.command, smtp.overrides, pickup.line, pickup.maxproc) == ("smtpd", {"a": "b"}, 5, 1)


# ---------------------------------------------------------------- the book's Example 7-20

def test_seed_example_7_20() -> None:
    rows = parse_master_cf(SEED)
    assert [row.name_type for row in rows] == [
        "smtp/inet", "pickup/unix", "cleanup/unix", "qmgr/unix", "tlsmgr/fifo", "rewrite/unix",
        "bounce/unix", "defer/unix", "flush/unix", "smtp/unix", "showq/unix", "error/unix",
        "local/unix", "lmtp/unix", "procmail/unix"]
    procmail = find(rows, "procmail", "unix")
    assert procmail is not None
    assert procmail.command == "pipe"
    assert procmail.args == ("flags=R", "user=cyrus", "argv=/usr/bin/procmail", "-t", "-m",
                             "USER=${user}", "EXT=${extension}", "/etc/procmailrc")
    assert procmail.overrides == {}
    assert (procmail.private, procmail.unpriv, procmail.chroot) == (True, False, False)
    assert (procmail.maxproc, procmail.wakeup, procmail.line) == (100, 0, 39)
    flush = find(rows, "flush", "unix")
    assert flush is not None and (flush.wakeup, flush.wakeup_conditional, flush.maxproc) == (1000, True, 0)
    smtp = find(rows, "smtp", "inet")
    assert smtp is not None and (smtp.private, smtp.chroot, smtp.endpoint) == (False, True, "25")
    assert [row.service for row in rows if delivers_locally(row)] == ["local", "procmail"]
    assert [row.service for row in rows if row.chroot and delivers_locally(row)] == []


# ---------------------------------------------------------------- arguments and -o overrides

ARGUMENTS = [
    ("smtp -o syslog_name=postfix/$service_name", ("-o", "syslog_name=postfix/$service_name"),
     {"syslog_name": "postfix/$service_name"}),
    ("smtpd -o { smtpd_reject_footer = Call us, please }",
     ("-o", "smtpd_reject_footer = Call us, please"), {"smtpd_reject_footer": "Call us, please"}),
    ("smtpd -osmtpd_tls_security_level=may", ("-osmtpd_tls_security_level=may",),
     {"smtpd_tls_security_level": "may"}),
    ("smtpd -vo a=1 -Do b=2", ("-vo", "a=1", "-Do", "b=2"), {"a": "1", "b": "2"}),
    ("smtpd -o a=1 -o a=2 -o b=", ("-o", "a=1", "-o", "a=2", "-o", "b="), {"a": "2", "b": ""}),
    # Options end at "--" and at the first non-option, as in the daemon's getopt("+...").
    ("lmtp -o a=1 -- -o b=2", ("-o", "a=1", "--", "-o", "b=2"), {"a": "1"}),
    ("pipe flags=R -o b=2", ("flags=R", "-o", "b=2"), {}),
    ("smtpd -n name -o a=1", ("-n", "name", "-o", "a=1"), {"a": "1"}),
    # Braces group an argument with blanks and are removed, with the blanks next to them.
    ("pipe flags=R argv=/bin/x { a  b } {} {c}", ("flags=R", "argv=/bin/x", "a  b", "", "c"), {}),
    ("pipe {user=x argv=/bin/y} {{nested} text}", ("user=x argv=/bin/y", "{nested} text"), {}),
]


@pytest.mark.parametrize(("command", "args", "overrides"), ARGUMENTS, ids=[a[0] for a in ARGUMENTS])
def test_arguments_and_overrides(command: str, args: tuple[str, ...], overrides: dict[str, str]) -> None:
    row = one(f"foo unix - - n - - {command}\n")
    assert row.args == args
    assert row.overrides == overrides
    assert list(row.overrides) == list(overrides)


def test_attached_brace_override_is_taken_literally(warnings: list[str]) -> None:
    # master(8) unwraps only an argument that starts with "{", so the daemon sees "{a=b}".
    row = one("foo unix - - n - - smtpd -o{a=b}\n")
    assert row.overrides == {"{a": "b}"}
    assert warnings == [f'{PATH}, line 1: "-o {{a=b}}": "{{a" is not a parameter name']


# ---------------------------------------------------------------- duplicates and endpoints

def test_last_duplicate_wins_in_the_first_place(warnings: list[str]) -> None:
    text = ("foo unix - - n - - first\n"
            "bar unix - - n - - bar\n"
            "foo unix - - n - - second\n")
    rows = parse(text)
    assert [(row.service, row.command, row.line) for row in rows] == [("foo", "second", 3), ("bar", "bar", 2)]
    assert warnings == [f'{PATH}, line 3: duplicate master.cf entry for service "foo" (private/foo) '
                        "-- using the last entry"]
    assert [row.command for row in parse(text, keep_duplicates=True)] == ["first", "bar", "second"]


def test_privacy_is_part_of_the_endpoint(warnings: list[str]) -> None:
    rows = parse("foo unix y - n - - a\nfoo unix n - n - - b\n")
    assert [row.endpoint for row in rows] == ["private/foo", "public/foo"]
    assert warnings == []
    found = find(rows, "foo", "unix")
    assert found is not None and found.command == "b"


@pytest.mark.skipif(not os.path.exists("/etc/services"), reason="no services database")
def test_inet_port_names_are_canonical(warnings: list[str]) -> None:
    try:
        socket.getservbyname("smtp", "tcp")
    except OSError:
        pytest.skip("services database lacks smtp")
    rows = parse("127.0.0.1:smtp inet n - n - - smtpd\n127.0.0.1:25 inet n - n - 1 smtpd\n")
    assert [(row.service, row.maxproc) for row in rows] == [("127.0.0.1:25", 1)]
    assert warnings == ['/etc/postfix/master.cf, line 2: duplicate master.cf entry for service '
                        '"127.0.0.1:smtp" ([127.0.0.1]:25) -- using the last entry']


@pytest.mark.parametrize(("name", "endpoint"), [
    ("25", "25"), ("0025", "25"), ("[127.0.0.1]:10025", "[127.0.0.1]:10025"),
    ("[ipv6:0:0::1]:587", "[::1]:587"), ("Mail.Example.COM:2525", "[mail.example.com]:2525"),
])
def test_inet_endpoint(name: str, endpoint: str) -> None:
    assert one(f"{name} inet n - n - - smtpd\n").endpoint == endpoint


# ---------------------------------------------------------------- find, select_rows, delivers_locally

TABLE = ("smtp inet n - y - - smtpd\n"
         "smtp unix - - y - - smtp\n"
         "relay unix - - y - - smtp\n"
         "local unix - n n - - local\n")


def test_find() -> None:
    rows = parse(TABLE)
    row = find(rows, "smtp", "unix")
    assert row is not None and row.command == "smtp"
    assert find(rows, "smtp", "fifo") is None
    assert find(rows, "nope", "unix") is None


@pytest.mark.parametrize(("patterns", "selected"), [
    ([], ["smtp/inet", "smtp/unix", "relay/unix", "local/unix"]),
    (["smtp"], ["smtp/inet", "smtp/unix"]),
    (["smtp/"], ["smtp/inet", "smtp/unix"]),
    (["smtp//inet"], ["smtp/inet"]),
    (["*/unix"], ["smtp/unix", "relay/unix", "local/unix"]),
    (["*"], ["smtp/inet", "smtp/unix", "relay/unix", "local/unix"]),
    # A row is listed once per pattern it matches, as postconf -M does.
    (["smtp", "*/inet"], ["smtp/inet", "smtp/inet", "smtp/unix"]),
])
def test_select(patterns: list[str], selected: list[str], warnings: list[str]) -> None:
    assert [row.name_type for row in select_rows(parse(TABLE), patterns)] == selected
    assert warnings == []


def test_select_unmatched(warnings: list[str]) -> None:
    assert [row.name_type for row in select_rows(parse(TABLE), ["local", "bogus/unix"])] == ["local/unix"]
    assert warnings == ['unmatched request: "bogus/unix"']


@pytest.mark.parametrize("pattern", ["", "/smtp", "a/b/c", "sm*", "*x/unix"])
def test_select_bad_pattern(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"-M option requires service_name\[/type\]"):
        select_rows(parse(TABLE), [pattern])


@pytest.mark.parametrize(("command", "local"), [
    ("local", True), ("virtual", True), ("pipe", True), ("/usr/lib/postfix/sbin/pipe", True),
    ("smtp", False), ("lmtp", False), ("spawn", False), ("pipes", False),
])
def test_delivers_locally(command: str, local: bool) -> None:
    assert delivers_locally(one(f"x unix - n n - - {command}\n")) is local


def test_row_parse_alone() -> None:
    row = row_parse("submission inet n - - - - smtpd -o smtpd_sasl_auth_enable=yes", "x.cf", 7,
                    compatibility_level="3.6", default_process_limit=50)
    assert (row.chroot, row.maxproc, row.path, row.line) == (False, 50, "x.cf", 7)
    assert format_row(row) == ("submission inet  n       -       -       -       -       smtpd "
                               "-o smtpd_sasl_auth_enable=yes")


@pytest.mark.parametrize("args, operands", [
    ("flags=R user=u argv=/bin/cat -x", ("flags=R", "user=u", "argv=/bin/cat", "-x")),
    ("-o a=b -v -o { c = d } flags=R argv=x", ("flags=R", "argv=x")),
    ("-oa=b -vD user=u", ("user=u",)),
    ("-v -- -o x", ("-o", "x")),
    ("-o a=b", ()),
])
def test_daemon_operands_follow_the_generic_options(args: str, operands: tuple[str, ...]) -> None:
    """What pipe(8) reads as its command attributes: the arguments after the daemon's own options."""
    assert daemon_operands(row_parse(f"p unix - n n - - pipe {args}")) == operands
