"""Tests for mta postmap: building, -q, -q -, -s, -i, modes, errors; differential tests against Postfix."""

from __future__ import annotations

import grp
import io
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mta import cli
from mta.commands import postmap
from mta.errors import MapError
from mta.maps import open_map
from mta.maps.hash import HashMap

REPO = Path(__file__).resolve().parents[3]


def mta(capsys: pytest.CaptureFixture[str], cfg: Path, *argv: str,
        stdin: bytes = b"", monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    """Run ``mta -c cfg postmap ARGV`` in-process; return (status, stdout, stderr)."""
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    status = cli.main(["-c", str(cfg), "postmap", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """An empty configuration directory (all Postfix defaults)."""
    directory = tmp_path / "cfg"
    directory.mkdir()
    return directory


# ---------------------------------------------------------------------------
# BUILD

def test_build_then_query_and_show(tmp_path: Path, cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "access"
    src.write_text("Example.COM  REJECT spam\n10.1.2 OK\n# comment\nuser@ DUNNO\n")
    assert mta(capsys, cfg, str(src)) == (0, "", "")
    assert mta(capsys, cfg, "-q", "EXAMPLE.com", f"hash:{src}") == (0, "REJECT spam\n", "")
    assert mta(capsys, cfg, "-q", "nothere", str(src))[0] == 1
    status, out, _ = mta(capsys, cfg, "-s", str(src))
    assert status == 0
    assert sorted(out.splitlines()) == ["10.1.2\tOK", "example.com\tREJECT spam", "user@\tDUNNO"]


def test_build_warnings_name_file_and_line(tmp_path: Path, cfg: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "t"
    src.write_text("a 1\nnovalue\nb: x\na 2\n")
    status, _, err = mta(capsys, cfg, str(src))
    assert status == 0
    assert err.splitlines() == [
        f"mta/postmap: warning: {src}, line 2: expected format: key whitespace value",
        f"mta/postmap: warning: {src}, line 3: record is in \"key: value\" format; "
        "is this an alias file?",
        f"mta/postmap: warning: {src}, line 4: duplicate entry: \"a\"",
    ]
    table = HashMap(f"hash:{src}", str(src))
    assert table.items() == [("a", "1"), ("b:", "x")]


@pytest.mark.parametrize("flag, expected", [
    ("-r", [("a", "2")]),
    ("-w", [("a", "1")]),
])
def test_build_duplicate_options(tmp_path: Path, cfg: Path, capsys: pytest.CaptureFixture[str],
                                 flag: str, expected: list[tuple[str, str]]) -> None:
    src = tmp_path / "t"
    src.write_text("a 1\nA 2\n")
    assert mta(capsys, cfg, flag, str(src)) == (0, "", "")
    assert HashMap(f"hash:{src}", str(src)).items() == expected


def test_build_no_fold(tmp_path: Path, cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "t"
    src.write_text("Foo X\n")
    assert mta(capsys, cfg, "-f", str(src))[0] == 0
    assert mta(capsys, cfg, "-f", "-q", "Foo", str(src)) == (0, "X\n", "")
    assert mta(capsys, cfg, "-q", "Foo", str(src))[0] == 1


@pytest.mark.parametrize("source_mode, options, expected", [
    (0o644, [], 0o644),
    (0o600, [], 0o600),
    (0o640, [], 0o640),
    (0o660, [], 0o640),
    (0o755, [], 0o644),
    (0o400, [], 0o600),
    (0o600, ["-p"], 0o644),
])
def test_new_table_mode_follows_source_read_bits(tmp_path: Path, cfg: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 source_mode: int, options: list[str],
                                                 expected: int) -> None:
    src = tmp_path / "t"
    src.write_text("a b\n")
    src.chmod(source_mode)
    old_umask = os.umask(0o077)
    try:
        assert mta(capsys, cfg, *options, str(src))[0] == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / "t.db").st_mode) == expected


def test_existing_table_keeps_its_mode(tmp_path: Path, cfg: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "t"
    src.write_text("a b\n")
    assert mta(capsys, cfg, str(src))[0] == 0
    (tmp_path / "t.db").chmod(0o604)
    src.write_text("a c\n")
    assert mta(capsys, cfg, str(src))[0] == 0
    assert stat.S_IMODE(os.stat(tmp_path / "t.db").st_mode) == 0o604
    assert mta(capsys, cfg, "-q", "a", str(src)) == (0, "c\n", "")


def test_incremental_adds_stdin_entries(tmp_path: Path, cfg: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "t"
    src.write_text("foo bar\n")
    assert mta(capsys, cfg, str(src))[0] == 0
    status, _, err = mta(capsys, cfg, "-i", str(src), stdin=b"new val\nFOO other\nbad\n",
                         monkeypatch=monkeypatch)
    assert status == 0
    assert err.splitlines() == [
        "mta/postmap: warning: stdin, line 2: duplicate entry: \"foo\"",
        "mta/postmap: warning: stdin, line 3: expected format: key whitespace value",
    ]
    assert HashMap(f"hash:{src}", str(src)).items() == [("foo", "bar"), ("new", "val")]
    assert mta(capsys, cfg, "-i", "-r", str(src), stdin=b"foo x\n", monkeypatch=monkeypatch)[0] == 0
    assert HashMap(f"hash:{src}", str(src)).lookup("foo") == "x"


@pytest.mark.parametrize("argv, message", [
    (["hash:{missing}"], "mta/postmap: fatal: open {missing}: No such file or directory"),
    (["regexp:{t}"], "mta/postmap: fatal: unsupported dictionary type: regexp does not support "
                     "bulk-mode creation."),
    (["cidr:{t}"], "mta/postmap: fatal: unsupported dictionary type: cidr does not support "
                   "bulk-mode creation."),
    (["foo:{t}"], "mta/postmap: fatal: unsupported dictionary type: foo"),
    (["-q", "x", "hash:{missing}"],
     "mta/postmap: fatal: open database {missing}.db: No such file or directory"),
    (["-s", "regexp:{t}"], "mta/postmap: fatal: table regexp:{t}: sequence operation is not "
                           "supported"),
    (["-q", "x", "regexp:{bad}"], "mta/postmap: fatal: {bad}, line 2: unknown regexp option \"q\""),
    (["-q", "x", "static:"],
     "mta/postmap: fatal: open dictionary: expecting \"type:name\" form instead of \"static:\""),
])
def test_errors(tmp_path: Path, cfg: Path, capsys: pytest.CaptureFixture[str],
                argv: list[str], message: str) -> None:
    (tmp_path / "t").write_text("/a/ b\n")
    (tmp_path / "bad").write_text("/a/ b\n/c/q d\n")
    names = {"t": tmp_path / "t", "missing": tmp_path / "missing", "bad": tmp_path / "bad"}
    argv = [arg.format(**names) for arg in argv]
    status, out, err = mta(capsys, cfg, *argv)
    assert (status, out) == (1, "")
    assert err.splitlines() == [message.format(**names)]


def test_default_database_type_from_main_cf(tmp_path: Path, cfg: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "t"
    src.write_text("a b\n")
    (cfg / "main.cf").write_text("default_database_type = cidr\n")
    status, _, err = mta(capsys, cfg, str(src))
    assert status == 1
    assert "cidr does not support bulk-mode creation" in err


# ---------------------------------------------------------------------------
# QUERY

def test_query_stdin_prints_key_tab_value(tmp_path: Path, cfg: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.write_text("foo bar\nbaz qux\n")
    second.write_text("x y\nfoo other\n")
    assert mta(capsys, cfg, str(first), str(second))[0] == 0
    status, out, _ = mta(capsys, cfg, "-q", "-", str(first), str(second),
                         stdin=b"FOO\nnone\nx\n\n", monkeypatch=monkeypatch)
    assert (status, out) == (0, "FOO\tbar\nx\ty\n")
    status, out, _ = mta(capsys, cfg, "-q", "-", str(first), stdin=b"none\n",
                         monkeypatch=monkeypatch)
    assert (status, out) == (1, "")


@pytest.mark.parametrize("spec, key, expected", [
    ("regexp:{dir}/re", "Foo@Bar", "user=Foo dom=Bar\n"),
    ("pcre:{dir}/re", "Foo@Bar", "user=Foo dom=Bar\n"),
    ("cidr:{dir}/cidr", "192.168.7.1", "REJECT\n"),
    ("inline:{{A=b, {{ c = d e }}}}", "a", "b\n"),
    ("inline:{{A=b, {{ c = d e }}}}", "C", "d e\n"),
    ("static:{{ any thing }}", "whatever", "any thing\n"),
])
def test_query_any_type(tmp_path: Path, cfg: Path, capsys: pytest.CaptureFixture[str],
                        spec: str, key: str, expected: str) -> None:
    (tmp_path / "re").write_text("/^(.*)@(.*)$/ user=$1 dom=${2}\n")
    (tmp_path / "cidr").write_text("192.168.0.0/16 REJECT\n")
    assert mta(capsys, cfg, "-q", key, spec.format(dir=tmp_path)) == (0, expected, "")


def test_query_inline_no_fold(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mta(capsys, cfg, "-f", "-q", "A", "inline:{A=b}") == (0, "b\n", "")
    assert mta(capsys, cfg, "-f", "-q", "a", "inline:{A=b}")[0] == 1
    assert mta(capsys, cfg, "-s", "inline:{A=b, c=d}") == (0, "a\tb\nc\td\n", "")


def test_query_regexp_keeps_non_utf8_bytes(tmp_path: Path) -> None:
    (tmp_path / "re").write_text("/^(.)/ [$1]\n")
    table = open_map(f"regexp:{tmp_path / 're'}")
    out = io.BytesIO()
    wrapper = io.TextIOWrapper(out, encoding="utf-8")
    assert postmap.postmap_query([table], "é", io.StringIO(), wrapper) == 0
    wrapper.flush()
    assert out.getvalue() == b"[\xc3]\n"


def test_build_function_counts_entries(tmp_path: Path) -> None:
    src = tmp_path / "t"
    src.write_text("a 1\nb 2\nc 3\n")
    assert postmap.postmap_build(src) == 3
    with pytest.raises(MapError, match="No such file"):
        postmap.postmap_build(tmp_path / "absent")


# ---------------------------------------------------------------------------
# DIFFERENTIAL TESTS AGAINST POSTFIX 3.7

def _postfix_root() -> Path | None:
    candidates = [os.environ.get("MTA_POSTFIX_ROOT"), str(REPO / ".cache/postfix-3.7/root"),
                  "/tmp/pfx/root"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "usr/sbin/postmap").exists():
            return Path(candidate)
    return None


POSTFIX_ROOT = _postfix_root()
needs_postfix = pytest.mark.skipif(POSTFIX_ROOT is None, reason="no Postfix 3.7 binaries unpacked")


def _postfix_accounts() -> tuple[str, str]:
    """A mail_owner and setgid_group Postfix accepts here (not root, not default_privs' ids)."""
    nobody = pwd.getpwnam("nobody")
    for user in pwd.getpwall():
        if user.pw_uid not in (0, nobody.pw_uid) and user.pw_gid != nobody.pw_gid:
            for group in grp.getgrall():
                if group.gr_gid not in (0, nobody.pw_gid, user.pw_gid):
                    return user.pw_name, group.gr_name
    pytest.skip("no account usable as Postfix mail_owner")


@pytest.fixture(scope="module")
def real_cfg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Postfix config dir: mail_owner and setgid_group that exist, pcre as a dynamic map."""
    assert POSTFIX_ROOT is not None
    directory = tmp_path_factory.mktemp("postfix-cfg")
    owner, group = _postfix_accounts()
    lib = POSTFIX_ROOT / "usr/lib/postfix"
    (directory / "main.cf").write_text(
        f"mail_owner = {owner}\nsetgid_group = {group}\n"
        f"meta_directory = {directory}\nshlib_directory = {lib}\n")
    if (lib / "postfix-pcre.so").exists():
        (directory / "dynamicmaps.cf").write_text("pcre\tpostfix-pcre.so\tdict_pcre_open\n")
    return directory


def real_postmap(cfg: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[bytes]:
    """Run Postfix's own postmap."""
    assert POSTFIX_ROOT is not None
    env = dict(os.environ, LD_LIBRARY_PATH=str(POSTFIX_ROOT / "usr/lib/postfix"))
    return subprocess.run([str(POSTFIX_ROOT / "usr/sbin/postmap"), "-c", str(cfg), *argv],
                          input=stdin.encode(), capture_output=True, env=env, timeout=30)


def our_query(spec: str, keys: list[str]) -> bytes:
    table = open_map(spec)
    out = io.BytesIO()
    wrapper = io.TextIOWrapper(out, encoding="utf-8", newline="\n")
    postmap.postmap_query([table], "-", io.StringIO("".join(k + "\n" for k in keys)), wrapper)
    wrapper.flush()
    return out.getvalue()


REGEXP_CASES = [
    # (table, keys)
    ("/^(.*)@(.*)$/ user=$1 dom=${2} lit=$$ p=$(1)\n", ["Foo@Bar", "nobody"]),
    ("/a/ x\n/a/ y\n!/b/ notb\n", ["a", "c", "b"]),
    ("if /a/\n/b/ y\nendif\n/a/ z\n", ["ab", "a", "b"]),
    ("if !/^x/\nif /y/\n/z/ inner\nendif\n/./ outer\nendif\n", ["yz", "y", "xyz", "q"]),
    ("IF /a/\n/a/ y\nENDIF\n!!/q/ dbl\n! ! /w/ dbl2\n", ["a", "q", "w"]),
    ("|a\\|b| x\n.a\\.b. y\n+a\\+b+ z\n", ["a|b", "a.b", "axb", "a+b", "aab", "b"]),
    ("{a{ brace\n_b_ under\n(c( paren\n", ["a", "b", "c"]),
    ("/a b/ sp\n/(a)(b)?c/ [$1][$2]\n", ["a b", "ac", "abc"]),
    ("/a/    x  y   \n/b/ one\n  continued\n", ["a", "b"]),
    ("/^$/ empty\n", [""]),
    ("/A/i cs\n/B/ ci\n", ["a", "A", "b"]),
    ("/é/ e-acute\n/^..$/ two-bytes\n/^(.)/ [$1]\n", ["É", "é", "ü", "x"]),
]

REGEXP_ONLY_CASES = [
    ("/[[:digit:]]+/ digits\n/^[[:alpha:]]+$/ alpha\n", ["42", "abc", "a1", "!"]),
    ("/[\\.]/ dot-or-backslash\n", ["\\", ".", "a"]),
    ("/[]a]/ bracket\n/[^]a]/ notbracket\n", ["]", "b"]),
    ("/(a|ab)(c|bcd)(d*)/ [$1][$2][$3]\n", ["abcd"]),
    ("/^(a*?)(a*)$/ [$1][$2]\n/^(b+?)(b*)$/ [$1][$2]\n/^(c??)(c*)$/ [$1][$2]\n",
     ["aaa", "bbb", "ccc"]),
    ("/(a**)/ [$1]\n", ["aaa"]),
    ("/\\<foo\\>/ word\n/\\w+/ w\n", ["a foo b", "afoo", "!!"]),
    ("/a|/ empty-alt\n", ["b"]),
    ("/a\\(b\\)c/x [$1]\n/d+/x literal-plus\n/e\\+/x gnu-plus\n/f|g/x literal-bar\n",
     ["abc", "d+", "dd", "ee", "f|g", "f"]),
    ("/^a$b/x basic-dollar\n/a)/ paren\n/x{2,3}y/ interval\n/z{,2}w/ interval0\n",
     ["a$b", "a)", "xxy", "xy", "zzw", "w"]),
    ("/(a)\\1/ backref\n", ["aa", "ab"]),
    ("/^[a-c]+$/ range\n/[[.-.]]/ collating\n/[[=e=]]/ equiv\n", ["abc", "abd", "-", "e"]),
    ("/^a.b$/ any\n/^c.d$/m any-newline-mode\n", ["axb", "cxd"]),
]

PCRE_ONLY_CASES = [
    ("/\\d+/ digits\n/(?i)X/ inline\n/a(?i)B/ mid\n", ["12", "x", "ab", "aB"]),
    ("/a{,2}/ literal\n", ["a{,2}", "a"]),
    ("/\\Qa.b\\E/ quoted\n", ["a.b", "axb"]),
    ("/a/A anchored\n", ["ba", "ab"]),
    ("/(a+)/U [$1]\n", ["aaa"]),
    ("/(b+?)/U [$1]\n", ["bbb"]),
    ("/(?<n>a)x/ [$1]\n/\\x{41}q/ hex\n", ["ax", "Aq"]),
    ("/[[:digit:]]z/ posix\n/[[:^alpha:]]y/ negposix\n", ["5z", "ay", "1y"]),
    ("/# x/x y\n", ["#", "anything"]),
    ("/a b/x y\n", ["ab", "a b"]),
    ("/a\\z/ z\n/b$/E e\n", ["a", "b"]),
    ("/^(a|ab)(c|bcd)(d*)$/ [$1][$2][$3]\n", ["abcd"]),
    ("/(a)(?:b)(c)/ [$1][$2]\n", ["abc"]),
]


def _differential(tmp_path: Path, real_cfg: Path, type_name: str, table: str, keys: list[str]) -> None:
    path = tmp_path / "table"
    path.write_text(table)
    real = real_postmap(real_cfg, "-q", "-", f"{type_name}:{path}", stdin="".join(k + "\n" for k in keys))
    assert real.returncode in (0, 1), real.stderr
    assert b"warning" not in real.stderr, real.stderr
    assert our_query(f"{type_name}:{path}", keys) == real.stdout


@needs_postfix
@pytest.mark.postfix
@pytest.mark.parametrize("table, keys", REGEXP_CASES + REGEXP_ONLY_CASES)
def test_regexp_same_as_postfix(tmp_path: Path, real_cfg: Path, table: str, keys: list[str]) -> None:
    _differential(tmp_path, real_cfg, "regexp", table, keys)


@needs_postfix
@pytest.mark.postfix
@pytest.mark.parametrize("table, keys", REGEXP_CASES + PCRE_ONLY_CASES)
def test_pcre_same_as_postfix(tmp_path: Path, real_cfg: Path, table: str, keys: list[str]) -> None:
    assert POSTFIX_ROOT is not None
    if not (POSTFIX_ROOT / "usr/lib/postfix/postfix-pcre.so").exists():
        pytest.skip("postfix-pcre is not unpacked")
    _differential(tmp_path, real_cfg, "pcre", table, keys)


CIDR_TABLE = """\
192.168.1.1             OK
192.168.0.0/16          REJECT
[10.0.0.0]/8            ten
2001:db8::1             OK6
[2001:db8::/32]         REJ6
!172.16.0.0/12          not-172
if 172.16.0.0/12
172.16.5.0/24           inner
endif
::ffff:1.2.3.4          mapped
1.2.3.4/032             zero-prefix
"""

CIDR_KEYS = ["192.168.1.1", "192.168.2.3", "10.9.9.9", "2001:db8::1", "2001:0db8:0::0001",
             "2001:db8::2", "[192.168.1.1]", "2001:db9::1", "garbage", "172.16.5.9", "172.16.6.1",
             "::ffff:1.2.3.4", "1.2.3.4", "192.168.001.001", "::1", "", " 1.2.3.4"]


@needs_postfix
@pytest.mark.postfix
def test_cidr_same_as_postfix(tmp_path: Path, real_cfg: Path) -> None:
    _differential(tmp_path, real_cfg, "cidr", CIDR_TABLE, CIDR_KEYS)


HASH_TABLE = (
    "Example.COM  REJECT spam\n"
    "foo bar  \n  baz  \n"
    "\tnot-a-continuation-at-start-is-fine-here x\n"
    "\"a b\"@x.example HOLD\n"
    "a\"b c\" quoted-inner\n"
    "# comment\n"
    "dup first\n"
    "DUP second\n"
    "crlf value\r\n"
    "last no-newline"
)
HASH_KEYS = ["example.com", "EXAMPLE.COM", "foo", "\"a b\"@x.example", "a b@x.example",
             "a\"b c\"", "dup", "crlf", "last", "missing"]


@needs_postfix
@pytest.mark.postfix
def test_hash_same_as_postfix(tmp_path: Path, real_cfg: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    (ours / "access").write_text(HASH_TABLE)
    (theirs / "access").write_text(HASH_TABLE)
    built = real_postmap(real_cfg, f"hash:{theirs / 'access'}")
    assert built.returncode == 0, built.stderr
    postmap.postmap_build(ours / "access")
    stdin = "".join(k + "\n" for k in HASH_KEYS)
    real = real_postmap(real_cfg, "-q", "-", f"hash:{theirs / 'access'}", stdin=stdin)
    assert our_query(f"hash:{ours / 'access'}", HASH_KEYS) == real.stdout
    shown = real_postmap(real_cfg, "-s", f"hash:{theirs / 'access'}")
    ours_shown = HashMap(f"hash:{ours / 'access'}", str(ours / "access")).items()
    assert sorted(shown.stdout.decode().splitlines()) == sorted(f"{k}\t{v}" for k, v in ours_shown)


INLINE_SPECS = [
    ("inline:{a=b, c=d}", ["a", "c", "A", "x"]),
    ("inline:{A=b}", ["a", "A"]),
    ("inline:{ { a = text with spaces }, c=d }", ["a", "c"]),
    ("inline:{a=b,a=c}", ["a"]),
    ("inline:{{a=b=c}}", ["a", "a=b"]),
    ("inline:{a={b}}", ["a"]),
    ("inline:{a=\"b\"}", ["a"]),
    ("static:foo", ["anything", ""]),
    ("static:{ foo bar }", ["x"]),
    ("static:{{a}}", ["x"]),
    ("static:a}", ["x"]),
]


@needs_postfix
@pytest.mark.postfix
@pytest.mark.parametrize("spec, keys", INLINE_SPECS)
def test_inline_same_as_postfix(real_cfg: Path, spec: str, keys: list[str]) -> None:
    real = real_postmap(real_cfg, "-q", "-", spec, stdin="".join(k + "\n" for k in keys))
    assert our_query(spec, keys) == real.stdout


@needs_postfix
@pytest.mark.postfix
@pytest.mark.parametrize("type_name, table, reason", [
    ("regexp", "/a/q b\n", "unknown regexp option \"q\""),
    ("regexp", "/a b\n", "no closing regexp delimiter \"/\""),
    ("regexp", "/(a)/ $2\n", "out of range replacement index \"2\""),
    ("regexp", "!/(a)/ $1\n", "$number found in negative match replacement text"),
    ("cidr", "192.168.1.1/24 OK\n", "non-null host address bits in \"192.168.1.1/24\", perhaps you "
                                    "should use \"192.168.1.0/24\" instead"),
    ("cidr", "192.168.1.0/33 OK\n", "bad mask length in \"192.168.1.0/33\""),
    ("cidr", "192.168.1 OK\n", "bad address pattern: \"192.168.1\""),
    ("cidr", "1.2.3.4\n", "no lookup result"),
])
def test_bad_lines_same_reason_as_postfix(tmp_path: Path, real_cfg: Path, type_name: str,
                                          table: str, reason: str) -> None:
    """Postfix warns and skips the rule; we refuse the table, with the same reason and file:line."""
    path = tmp_path / "table"
    path.write_text(table)
    real = real_postmap(real_cfg, "-q", "x", f"{type_name}:{path}")
    assert f"{type_name} map {path}, line 1: {reason}: skipping this rule" in real.stderr.decode()
    with pytest.raises(Exception) as info:
        open_map(f"{type_name}:{path}")
    assert str(info.value) == f"{path}, line 1: {reason}"
