"""Tests for mta.aliases: aliases(5) syntax, stored values, items, lookup and table builds.

Expected stored values are what real Postfix 3.7.11 postalias stores for the
same input (observed with ``postalias -s``); the differential test in
tests/mta/commands/test_postalias.py checks the same against the binary.
"""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from mta import log
from mta.aliases import (
    AliasFileError,
    AliasItem,
    AliasKind,
    alias_build,
    alias_build_all,
    alias_entry_parse,
    alias_items,
    alias_lookup,
    alias_parse,
    alias_spec,
    fold_ascii,
    logical_lines,
    tokens_scan,
)
from mta.errors import ConfigError, MapError
from mta.maps import open_map
from mta.maps.hash import table_mode

HOST = "mail.example.test"
NOW = 1_700_000_000


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """Send mta log messages to the captured stderr, prefixed ``test: ``."""
    log.setup_stderr("test")
    yield capsys


def parse(text: str | bytes, **options: object) -> dict[str, str]:
    data = text.encode() if isinstance(text, str) else text
    return {e.name: e.value for e in alias_parse(data, "aliases", **options)}  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# FILE SYNTAX: one case per rule, (id, file text, expected name -> stored value).

SYNTAX_CASES = [
    ("simple", "root: bob\n", {"root": "bob"}),
    ("no_final_newline", "root: bob", {"root": "bob"}),
    ("comment_line", "# postmaster: x\nroot: bob\n", {"root": "bob"}),
    ("indented_comment", "   # x: y\nroot: bob\n", {"root": "bob"}),
    ("blank_lines", "\n\nroot: bob\n   \n\t\nadmin: carol\n", {"root": "bob", "admin": "carol"}),
    ("continuation", "list: bob, carol,\n   dave\n  , erin\n", {"list": "bob, carol, dave, erin"}),
    ("continuation_across_blank_and_comment", "k: a\n\n# c\n  b\n\t  # c2\n\tc\n", {"k": "a b c"}),
    ("continuation_inside_quotes_keeps_spaces", 'q: "foo   \n   bar"\n', {"q": '"foo      bar"'}),
    ("formfeed_starts_continuation", "a: b\n\fc\n", {"a": '"b\fc"'}),
    ("quoted_name", '"odd name": frank\n', {"odd name": "frank"}),
    ("quoted_name_with_at", '"quoted@dom": y\n', {"quoted@dom": "y"}),
    ("escaped_at_in_name", "k9\\@x: k\n", {"k9@x": "k"}),
    ("escaped_quote_in_name", '"K4\\"q": e\n', {'k4"q': "e"}),
    ("multi_word_name", "k2 b: c\n", {"k2 b": "c"}),
    ("comment_in_name_kept", "k6 (cmt): g\n", {"k6 (cmt)": "g"}),
    ("space_before_colon", "spacey :  x\n", {"spacey": "x"}),
    ("name_folded", "Mixed: Value WITH Case\n", {"mixed": "Value WITH Case"}),
    ("folding_is_ascii_only", "ÉCOLE: x\n", {"École": "x"}),
    ("trailing_hash_is_value", "trail: a, b # comment here\n", {"trail": "a, b # comment here"}),
    ("commas_get_one_space", "tabbed:\ta\t,\tb  \n", {"tabbed": "a, b"}),
    ("trailing_comma_keeps_space", "k: x , , y,\n", {"k": "x, , y, "}),
    ("colon_in_value", "a18: a:b:c\n", {"a18": "a:b:c"}),
    ("quoted_command_kept", 'pipe: "|/usr/bin/procmail -a foo"\n', {"pipe": '"|/usr/bin/procmail -a foo"'}),
    ("bare_command", "c: |/usr/bin/procmail -a foo\n", {"c": "|/usr/bin/procmail -a foo"}),
    ("include", "inc: :include:/etc/list\n", {"inc": ":include:/etc/list"}),
    ("include_space_dropped", "inc: :INCLUDE: /etc/y\n", {"inc": ":INCLUDE:/etc/y"}),
    ("maildir", "file: /var/mail/x/\n", {"file": "/var/mail/x/"}),
    ("operators_close_up", "k: x | y . z % w ! v @ u ; t ] s ) r : q\n", {"k": "x|y.z%w!v@u;t]s)r:q"}),
    ("atom_characters", "k: x # $ & ' * + - / = ? ^ _ ` { } ~ y\n", {"k": "x # $ & ' * + - / = ? ^ _ ` { } ~ y"}),
    ("angle_brackets", "k: x < y > z\n", {"k": "x <y>z"}),
    ("name_and_route_addr", "k: <bob@example.com>, Carol <carol@example.com>\n",
     {"k": "<bob@example.com>, Carol <carol@example.com>"}),
    ("comment_in_value", "k: bob (Bob Smith) , carol\n", {"k": "bob (Bob Smith), carol"}),
    ("escaped_comma_quoted", "k: x \\, y\n", {"k": 'x "," y'}),
    ("escaped_space_quoted", "k: x\\ y\n", {"k": '"x y"'}),
    ("escaped_plain_char", "k: a\\xb\n", {"k": "axb"}),
    ("backslash_in_quotes_dropped", 'k: "a\\b"\n', {"k": '"ab"'}),
    ("control_char_quoted", "k: x\x01y\n", {"k": '"x\x01y"'}),
    ("tab_in_quotes_is_space", 'k: "a\tb"\n', {"k": '"a b"'}),
    ("domain_literal", "k: x [1.2.3.4] y\n", {"k": "x [1.2.3.4] y"}),
    ("domain_literal_backslash", "k: [a\\\\b]\n", {"k": "[a\\\\b]"}),
    ("unterminated_quote", 'k: x " y\n', {"k": 'x " y"'}),
    ("unterminated_comment", "k: x ( y\n", {"k": "x ( y"}),
    ("empty_quoted_value", 'k: ""\n', {"k": '""'}),
    ("quoted_pieces", 'k: a"b c"d\n', {"k": 'a "b c" d'}),
    ("crlf", "cr: v\r\ncr2\r: w\r\n", {"cr": "v", "cr2": "w"}),
    ("utf8_value", "k: café\n", {"k": "café"}),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in SYNTAX_CASES], ids=[c[0] for c in SYNTAX_CASES])
def test_syntax(text: str, expected: dict[str, str]) -> None:
    assert parse(text) == expected


def test_no_fold_keeps_case() -> None:
    assert parse("Mixed: V\n", fold_case=False) == {"Mixed": "V"}


def test_logical_lines_report_first_line() -> None:
    lines = ["a: b", "", "  c", "# x", "d: e", "  f"]
    assert list(logical_lines(lines)) == [(1, "a: b  c"), (5, "d: e  f")]


def test_logical_lines_keep_leading_whitespace_of_first_line() -> None:
    assert list(logical_lines(["  lead: x", "  more", "k: v"])) == [(1, "  lead: x  more"), (3, "k: v")]


def test_tokens_scan_kinds() -> None:
    kinds = [(t.kind.value, t.text) for t in tokens_scan('a "b c" (d) [e] <')]
    assert kinds == [("atom", "a"), ("quoted-string", "b c"), ("comment", "(d)"),
                     ("domain-literal", "e"), ("operator", "<")]


@pytest.mark.parametrize("text, expected", [
    ("POSTMASTER", "postmaster"), ("ÉCOLE", "École"), ("mixed.Case-1", "mixed.case-1"),
])
def test_fold_ascii(text: str, expected: str) -> None:
    assert fold_ascii(text) == expected


# ---------------------------------------------------------------------------
# BAD LINES: (id, file text, line, cause, entries kept when lenient as Postfix keeps them).
# Strict mode raises; lenient mode warns and skips the line.

BAD_CASES = [
    ("no_colon", "ok: a\nnocolon\n", 2, "need name:value pair", {"ok": "a"}),
    ("empty_value", "empty:\nok: a\n", 1, "need name:value pair", {"ok": "a"}),
    ("blank_value", "ok: a\nempty2:    \n", 2, "need name:value pair", {"ok": "a"}),
    ("colon_first", ": x\n", 1, "need name:value pair", {}),
    ("comma_in_name", "a, b: c\n", 1, "need name:value pair", {}),
    ("domain_in_name", "User@Domain: x\nok: a\n", 1, "name must be local", {"ok": "a"}),
    ("percent_in_name", "a%b: x\n", 1, "name must be local", {}),
    ("domain_and_empty_value", "a@b:\n", 1, "need name:value pair", {}),
    ("leading_whitespace", "  lead: x\n  more\nk: v\n", 1,
     'logical line must not start with whitespace: "  lead: x  more"', {"k": "v"}),
    ("leading_whitespace_truncated", "  lead: " + "x" * 40 + "\n", 1,
     'logical line must not start with whitespace: "  lead: xxxxxxxxxxxxxxxxxxxxxx..."', {}),
    ("continued_bad_line_names_first_line", "k: v\nbad\n  more\n", 2, "need name:value pair", {"k": "v"}),
    ("empty_name", '"": i\n', 1, "empty lookup key value is not allowed", {}),
    ("empty_value_from_backslash", "k: \\\n", 1, "empty string result is not allowed", {}),
]


@pytest.mark.parametrize("text, line, cause", [c[1:4] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_line_strict(text: str, line: int, cause: str) -> None:
    with pytest.raises(AliasFileError) as info:
        parse(text)
    assert (info.value.path, info.value.line, info.value.reason) == ("aliases", line, cause)
    assert str(info.value) == f"aliases, line {line}: {cause}"
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize("text, line, cause, kept", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_line_lenient(text: str, line: int, cause: str, kept: dict[str, str],
                          stderr: pytest.CaptureFixture[str]) -> None:
    assert parse(text, strict=False) == kept
    assert stderr.readouterr().err == f"test: warning: aliases, line {line}: {cause}\n"


@pytest.mark.parametrize("data, line, cause", [
    (b"ok: a\nbad: caf\xe9\n", 2, "malformed UTF-8 at byte 9"),
    (b"ok: a\nnul: a\x00b\n", 2, "NUL character in line"),
])
def test_bytes_that_are_bad_lines(data: bytes, line: int, cause: str) -> None:
    with pytest.raises(AliasFileError) as info:
        parse(data)
    assert (info.value.line, info.value.reason) == (line, cause)


def test_all_bad_lines_are_reported() -> None:
    with pytest.raises(AliasFileError) as info:
        parse("a: b\nx\ny@z: w\nc: d\n:\n")
    assert [(p.line, p.reason) for p in info.value.problems] == [
        (2, "need name:value pair"), (3, "name must be local"), (5, "need name:value pair")]
    assert str(info.value) == "aliases, line 2: need name:value pair (and 2 more bad lines)"


# ---------------------------------------------------------------------------
# DUPLICATES

def test_duplicate_first_wins_with_warning(stderr: pytest.CaptureFixture[str]) -> None:
    assert parse("dup: first\nDUP: second\ndup: third\n") == {"dup": "first"}
    assert stderr.readouterr().err == (
        'test: warning: aliases, line 2: duplicate entry: "dup"\n'
        'test: warning: aliases, line 3: duplicate entry: "dup"\n')


@pytest.mark.parametrize("policy, expected", [("ignore", "first"), ("replace", "third")])
def test_duplicate_policies_are_silent(policy: str, expected: str, stderr: pytest.CaptureFixture[str]) -> None:
    assert parse("dup: first\ndup: second\ndup: third\n", duplicates=policy) == {"dup": expected}
    assert stderr.readouterr().err == ""


def test_entry_parse_returns_name_and_value() -> None:
    assert alias_entry_parse('"Odd Name": frank ,  "|/bin/cat  -n"') == ("odd name", 'frank, "|/bin/cat  -n"')


# ---------------------------------------------------------------------------
# VALUE ITEMS: (id, stored value, expected items as (kind, target)).

ITEM_CASES = [
    ("address", "bob", [("address", "bob")]),
    ("remote_address", "mick.bauer@example.com", [("address", "mick.bauer@example.com")]),
    ("list", "bdewinter, mick.bauer", [("address", "bdewinter"), ("address", "mick.bauer")]),
    ("route_addr", "Carol <carol@example.com>", [("address", "carol@example.com")]),
    ("comment_dropped", "bob (Bob Smith), carol", [("address", "bob"), ("address", "carol")]),
    ("quoted_local_part", '"odd name"@example.com', [("address", "odd name@example.com")]),
    ("include", ":include:/etc/postfix/clientlist.txt", [("include", "/etc/postfix/clientlist.txt")]),
    ("include_upper_case", ":INCLUDE:/etc/y", [("include", "/etc/y")]),
    ("file", "/home/bdewinter/spambucket.txt", [("file", "/home/bdewinter/spambucket.txt")]),
    ("maildir", "/var/mail/x/", [("file", "/var/mail/x/")]),
    ("quoted_command", '"|/usr/bin/procmail -a foo"', [("command", "/usr/bin/procmail -a foo")]),
    ("bare_command", "|/usr/bin/procmail -a foo", [("command", "/usr/bin/procmail -a foo")]),
    ("exit_command", '"|exit 67"', [("command", "exit 67")]),
    ("comma_in_quotes", '"quoted,comma", other', [("address", "quoted,comma"), ("address", "other")]),
    ("comma_in_angles", "<a,b>, c", [("address", "a, b"), ("address", "c")]),
    ("empty_items_dropped", "x, , y, ", [("address", "x"), ("address", "y")]),
    ("empty_quoted", '""', []),
]


@pytest.mark.parametrize("value, expected", [c[1:] for c in ITEM_CASES], ids=[c[0] for c in ITEM_CASES])
def test_alias_items(value: str, expected: list[tuple[str, str]]) -> None:
    assert [(i.kind.value, i.target) for i in alias_items(value)] == expected


@pytest.mark.parametrize("item, maildir", [
    (AliasItem(AliasKind.FILE, "/var/mail/x/"), True),
    (AliasItem(AliasKind.FILE, "/var/mail/x"), False),
    (AliasItem(AliasKind.ADDRESS, "x/"), False),
])
def test_maildir(item: AliasItem, maildir: bool) -> None:
    assert item.maildir is maildir


# ---------------------------------------------------------------------------
# BUILD

def build(path: Path, text: str | None = None, **options: object) -> int:
    if text is not None:
        path.write_text(text)
    return alias_build(str(path), hostname=HOST, now=NOW, **options)  # type: ignore[arg-type]


def dump(path: Path) -> dict[str, str]:
    table = open_map(f"hash:{path}")
    try:
        return dict(table.items())  # type: ignore[attr-defined]
    finally:
        table.close()


def test_build_adds_compatibility_records(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    assert build(src, "root: bob\n") == 4
    assert dump(src) == {"root": "bob", "@": "@", "YP_LAST_MODIFIED": "1700000000",
                         "YP_MASTER_NAME": HOST}


def test_build_source_at_record_wins(tmp_path: Path, stderr: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "aliases"
    build(src, '"@": x\n')
    assert dump(src)["@"] == "x"
    assert stderr.readouterr().err == f'test: warning: {src}.db: duplicate entry: "@"\n'


def test_seed_example_7_21(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    build(src, (
        "postmaster:       root\n\nmailer-daemon:    root\n\nhostmaster:       root\n\n"
        "root:             bdewinter\n\nmailguys:         bdewinter,mick.bauer\n\n\n"
        "clients:          :include:/etc/postfix/clientlist.txt\n\n"
        "spam-reports:     /home/bdewinter/spambucket.txt\n"))
    table = open_map(f"hash:{src}")
    try:
        assert table.lookup("mailguys") == "bdewinter, mick.bauer"
        assert alias_lookup([table], "PostMaster") == [AliasItem(AliasKind.ADDRESS, "root")]
        assert alias_lookup([table], "mailguys") == [AliasItem(AliasKind.ADDRESS, "bdewinter"),
                                                     AliasItem(AliasKind.ADDRESS, "mick.bauer")]
        assert alias_lookup([table], "clients") == [
            AliasItem(AliasKind.INCLUDE, "/etc/postfix/clientlist.txt")]
        assert alias_lookup([table], "spam-reports") == [
            AliasItem(AliasKind.FILE, "/home/bdewinter/spambucket.txt")]
        assert alias_lookup([table], "nobody-here") is None
    finally:
        table.close()


def test_lookup_searches_tables_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a1", tmp_path / "a2"
    build(first, "root: alice\n")
    build(second, "root: bob\nadmin: carol\n")
    maps = [open_map(f"hash:{first}"), open_map(f"hash:{second}")]
    assert alias_lookup(maps, "ROOT") == [AliasItem(AliasKind.ADDRESS, "alice")]
    assert alias_lookup(maps, "Admin") == [AliasItem(AliasKind.ADDRESS, "carol")]


def test_failed_build_leaves_old_table(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    build(src, "root: bob\n")
    db = tmp_path / "aliases.db"
    before = (db.read_bytes(), db.stat().st_ino)
    with pytest.raises(AliasFileError) as info:
        build(src, "root: carol\nbroken line\n")
    assert str(info.value) == f"{src}, line 2: need name:value pair"
    assert (db.read_bytes(), db.stat().st_ino) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aliases", "aliases.db"]


def test_missing_source_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(MapError, match=f"^open {tmp_path}/nope: No such file or directory$"):
        alias_build(str(tmp_path / "nope"), hostname=HOST)


@pytest.mark.parametrize("spec", ["regexp:/etc/aliases", "btree:/etc/aliases"])
def test_only_hash_can_be_built(spec: str) -> None:
    with pytest.raises(MapError, match="unsupported map type for this operation"):
        alias_build(spec, hostname=HOST)


# Source mode -> new table mode, as observed with postalias 3.7.11 (umask 022 and 077 alike).
MODE_CASES = [(0o600, 0o600), (0o640, 0o640), (0o604, 0o604), (0o666, 0o644), (0o400, 0o600),
              (0o755, 0o644), (0o444, 0o644), (0o660, 0o640), (0o606, 0o604), (0o620, 0o600)]


@pytest.mark.parametrize("source_mode, db_mode", MODE_CASES, ids=[f"{a:o}" for a, _ in MODE_CASES])
def test_new_table_mode(source_mode: int, db_mode: int, tmp_path: Path) -> None:
    assert table_mode(source_mode) == db_mode
    src = tmp_path / "aliases"
    src.write_text("a: b\n")
    src.chmod(source_mode)
    build(src)
    assert stat.S_IMODE((tmp_path / "aliases.db").stat().st_mode) == db_mode


def test_default_mode_option(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    src.write_text("a: b\n")
    src.chmod(0o600)
    build(src, inherit_mode=False)
    assert stat.S_IMODE((tmp_path / "aliases.db").stat().st_mode) == 0o644


def test_existing_table_keeps_its_mode(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    build(src, "a: b\n")
    db = tmp_path / "aliases.db"
    db.chmod(0o600)
    build(src, "a: c\n")
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert dump(src)["a"] == "c"


@pytest.mark.parametrize("spec, expected", [
    ("/etc/aliases", "hash:/etc/aliases"), ("hash:/etc/aliases", "hash:/etc/aliases"),
    ("lmdb:/etc/aliases", "lmdb:/etc/aliases"),
])
def test_alias_spec(spec: str, expected: str) -> None:
    assert alias_spec(spec) == expected


def test_build_all_reports_each_failure(tmp_path: Path, stderr: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("a: b\n")
    bad.write_text("a: b\nx\ny\n")
    failed = alias_build_all([f"hash:{bad}", f"hash:{good}", f"regexp:{good}"], hostname=HOST)
    assert failed == [f"hash:{bad}", f"regexp:{good}"]
    assert (tmp_path / "good.db").exists() and not (tmp_path / "bad.db").exists()
    err = stderr.readouterr().err.splitlines()
    assert err[:3] == [f"test: error: {bad}, line 2: need name:value pair",
                       f"test: error: {bad}, line 3: need name:value pair",
                       f"test: error: {bad}: 2 bad lines; {bad}.db not updated"]
    assert err[3].startswith("test: error: unsupported map type for this operation: regexp")


# ---------------------------------------------------------------------------
# PRIVILEGES (root only): the build runs as the source file's owner unless keep_root.

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _other_user() -> pwd.struct_passwd:
    for name in ("mail", "daemon", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("no unprivileged user")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A sticky world-writable directory reachable by other users (tmp_path's parents are 0700)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        os.chmod(name, 0o1777)
        yield Path(name)


@needs_root
def test_build_runs_as_source_owner(shared_dir: Path) -> None:
    user = _other_user()
    src = shared_dir / "aliases"
    src.write_text("a: b\n")
    os.chown(src, user.pw_uid, user.pw_gid)
    build(src)
    st = (shared_dir / "aliases.db").stat()
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
    assert os.geteuid() == 0 and os.getegid() == 0


@needs_root
def test_keep_root_builds_as_root(shared_dir: Path) -> None:
    user = _other_user()
    src = shared_dir / "aliases"
    src.write_text("a: b\n")
    os.chown(src, user.pw_uid, user.pw_gid)
    build(src, keep_root=True)
    st = (shared_dir / "aliases.db").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)


@needs_root
def test_root_owned_source_gives_its_group(shared_dir: Path) -> None:
    user = _other_user()
    src = shared_dir / "aliases"
    src.write_text("a: b\n")
    os.chown(src, 0, user.pw_gid)
    build(src)
    st = (shared_dir / "aliases.db").stat()
    assert (st.st_uid, st.st_gid) == (0, user.pw_gid)


@needs_root
def test_table_not_writable_by_source_owner(shared_dir: Path) -> None:
    user = _other_user()
    src = shared_dir / "aliases"
    src.write_text("a: b\n")
    build(src, keep_root=True)
    os.chown(src, user.pw_uid, user.pw_gid)
    with pytest.raises(MapError, match=r"^open database .*aliases\.db: Permission denied$"):
        build(src)
    assert os.geteuid() == 0


@needs_root
def test_keep_root_keeps_existing_owner(shared_dir: Path) -> None:
    user = _other_user()
    src = shared_dir / "aliases"
    build(src, "a: b\n", keep_root=True)
    db = shared_dir / "aliases.db"
    os.chown(db, user.pw_uid, user.pw_gid)
    build(src, "a: c\n", keep_root=True)
    assert (db.stat().st_uid, db.stat().st_gid) == (user.pw_uid, user.pw_gid)
