"""Tests for regexp: and pcre: tables (mta.maps.regexp): syntax, flags, if/endif, $n, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mta.errors import ConfigError, MapError
from mta.maps import open_map
from mta.maps.regexp import PcreMap, RegexpMap, RuleError, result_parse


@pytest.fixture(autouse=True)
def _mta_log_reaches_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.main() (other tests) stops the mta logger from propagating; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("mta"), "propagate", True)


def table(tmp_path: Path, text: str, type_name: str = "regexp", strict: bool = True) -> RegexpMap:
    path = tmp_path / "table"
    path.write_text(text)
    cls = RegexpMap if type_name == "regexp" else PcreMap
    return cls(f"{type_name}:{path}", str(path), strict=strict)


BOTH = pytest.mark.parametrize("type_name", ["regexp", "pcre"])


@BOTH
@pytest.mark.parametrize("text, key, expected", [
    ("/^(.*)@(.*)$/ user=$1 dom=${2} lit=$$ p=$(1)\n", "Foo@Bar", "user=Foo dom=Bar lit=$ p=Foo"),
    ("/a/ first\n/a/ second\n", "xa", "first"),
    ("/a/ x\n", "b", None),
    ("!/a/ not-a\n", "b", "not-a"),
    ("!/a/ not-a\n", "a", None),
    ("!!/a/ double\n", "a", "double"),
    ("! ! !/a/ triple\n", "b", "triple"),
    ("/A/ default-icase\n", "a", "default-icase"),
    ("/A/i case-sensitive\n", "a", None),
    ("/A/ii toggled-twice\n", "a", "toggled-twice"),
    ("|a\\|b| escaped-delim\n", "a|b", "escaped-delim"),
    ("{a{ brace-delim\n", "a", "brace-delim"),
    ('"a" quote-delim\n', "a", "quote-delim"),
    ("/a b/ pattern-with-space\n", "a b", "pattern-with-space"),
    ("/a/\t  spaced   result  \n", "a", "spaced   result"),
    ("/a/ one\n  two\n", "a", "one  two"),
    ("/^$/ empty-key\n", "", "empty-key"),
    ("// empty-pattern\n", "anything", "empty-pattern"),
    ("/(a)|(b)/ [$1][$2]\n", "b", "[][b]"),
    ("/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)/ [${10}][${01}]\n", "abcdefghij", "[j][a]"),
    ("/(a)/ $1-x $1.x\n", "a", "a-x a.x"),
    ("/é/ bytes\n", "É", None),
    ("/^..$/ two-bytes\n", "é", "two-bytes"),
])
def test_lookup(tmp_path: Path, type_name: str, text: str, key: str, expected: str | None) -> None:
    assert table(tmp_path, text, type_name).lookup(key) == expected


@BOTH
@pytest.mark.parametrize("text, key, expected", [
    ("if /a/\n/b/ inner\nendif\n/a/ outer\n", "ab", "inner"),
    ("if /a/\n/b/ inner\nendif\n/a/ outer\n", "a", "outer"),
    ("if /a/\n/b/ inner\nendif\n/a/ outer\n", "b", None),
    ("if !/^x/\nif /y/\n/z/ deep\nendif\n/./ mid\nendif\n/x/ top\n", "yz", "deep"),
    ("if !/^x/\nif /y/\n/z/ deep\nendif\n/./ mid\nendif\n/x/ top\n", "y", "mid"),
    ("if !/^x/\nif /y/\n/z/ deep\nendif\n/./ mid\nendif\n/x/ top\n", "xyz", "top"),
    ("IF /a/\n/a/ upper\nENDIF\n", "a", "upper"),
    ("if/a/\n/a/ no-space\nendif\n", "a", "no-space"),
    ("if /a/i\n/A/ flags-on-if\nendif\n", "A", None),
])
def test_if_endif(tmp_path: Path, type_name: str, text: str, key: str, expected: str | None) -> None:
    assert table(tmp_path, text, type_name).lookup(key) == expected


@pytest.mark.parametrize("text, key, expected", [
    ("/[[:digit:]]+/ d\n", "42", "d"),
    ("/^[[:alpha:]]+$/ a\n", "a1", None),
    ("/[\\.]/ backslash-is-literal-in-brackets\n", "\\", "backslash-is-literal-in-brackets"),
    ("/[]a]/ b\n", "]", "b"),
    ("/[^]a]/ b\n", "]", None),
    ("/[a-]/ dash\n", "-", "dash"),
    ("/[[.-.]]/ coll\n", "-", "coll"),
    ("/[[=e=]]/ equiv\n", "E", "equiv"),
    ("/^(a*?)(a*)$/ [$1][$2]\n", "aaa", "[aaa][]"),
    ("/^(a+?)(a*)$/ [$1][$2]\n", "aaa", "[aaa][]"),
    ("/^(a??)(a*)$/ [$1][$2]\n", "aaa", "[a][aa]"),
    ("/(a**)/ [$1]\n", "aaa", "[aaa]"),
    ("/a)/ lone-paren\n", "a)", "lone-paren"),
    ("/a}/ lone-brace\n", "a}", "lone-brace"),
    ("/x{2}y/ interval\n", "xxy", "interval"),
    ("/^x{,1}y$/ interval0\n", "xxy", None),
    ("/\\<foo\\>/ word\n", "a foo b", "word"),
    ("/\\<foo\\>/ word\n", "afoo", None),
    ("/\\`a\\'/ buffer-anchors\n", "a", "buffer-anchors"),
    ("/(a)\\1/ backref\n", "aa", "backref"),
    ("/a$/ dollar-end-only\n", "a\n", None),
    ("/a$/m dollar-newline\n", "a\nb", "dollar-newline"),
    ("/a.b/ dot-newline\n", "a\nb", "dot-newline"),
    ("/a.b/m dot-no-newline\n", "a\nb", None),
    ("/a[^x]b/m class-no-newline\n", "a\nb", None),
    ("/^b/m caret-newline\n", "a\nb", "caret-newline"),
    ("/a+/x bre-literal-plus\n", "a+", "bre-literal-plus"),
    ("/a\\+/x bre-gnu-plus\n", "aa", "bre-gnu-plus"),
    ("/a\\(b\\)c/x [$1]\n", "abc", "[b]"),
    ("/a\\|b/x bre-alt\n", "b", "bre-alt"),
    ("/a\\{2\\}/x bre-interval\n", "aa", "bre-interval"),
    ("/*a/x bre-leading-star\n", "*a", "bre-leading-star"),
    ("/a^b$c/x bre-literal-anchors\n", "a^b$c", "bre-literal-anchors"),
    ("/^a$/x bre-anchors\n", "a", "bre-anchors"),
    ("/\\d/ letter-d\n", "d", "letter-d"),
])
def test_posix_syntax(tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, key: str,
                      expected: str | None) -> None:
    assert table(tmp_path, text).lookup(key) == expected


def test_escaped_letter_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mta"):
        table(tmp_path, "/\\d/ x\n")
    assert caplog.messages == [
        f'{tmp_path / "table"}, line 1: "\\d" is not a POSIX escape: it matches the letter "d"']


@pytest.mark.parametrize("text, key, expected", [
    ("/\\d+/ digits\n", "12", "digits"),
    ("/(?i)X/ global\n", "x", "global"),
    ("/a(?i)B/i mid-pattern\n", "aB", "mid-pattern"),
    ("/a(?i)B/i mid-pattern\n", "ab", "mid-pattern"),
    ("/a(?-i)B/ scoped-off\n", "ab", None),
    ("/a{,2}/ pcre2-literal\n", "a{,2}", "pcre2-literal"),
    ("/\\Qa.b\\E/ quoted\n", "axb", None),
    ("/\\Qa.b\\E/ quoted\n", "a.b", "quoted"),
    ("/a/A anchored\n", "ba", None),
    ("/a/A anchored\n", "ab", "anchored"),
    ("/(a+)/U [$1]\n", "aaa", "[a]"),
    ("/(a+?)/U [$1]\n", "aaa", "[aaa]"),
    ("/(a++)/ [$1]\n", "aaa", "[aaa]"),
    ("/(?<n>a)\\k<n>/ [$1]\n", "aa", "[a]"),
    ("/(?'n'a)\\g{n}/ [$1]\n", "aa", "[a]"),
    ("/(a)\\g{-1}/ rel\n", "aa", "rel"),
    ("/\\x{41}/ hex\n", "A", "hex"),
    ("/\\o{101}/ oct\n", "A", "oct"),
    ("/\\cA/ ctrl\n", "\x01", "ctrl"),
    ("/\\e/ esc\n", "\x1b", "esc"),
    ("/a\\hb/ hspace\n", "a b", "hspace"),
    ("/[[:^alpha:]]/ negposix\n", "a", None),
    ("/[[:^alpha:]]/ negposix\n", "1", "negposix"),
    ("/a\\z/ z\n", "a\n", None),
    ("/a\\Z/ Z\n", "a\n", "Z"),
    ("/a$/ dollar-before-final-newline\n", "a\n", "dollar-before-final-newline"),
    ("/a$/E dollar-endonly\n", "a\n", None),
    ("/a.b/ dotall-default\n", "a\nb", "dotall-default"),
    ("/a.b/s dotall-off\n", "a\nb", None),
    ("/a #comment/x verbose\n", "a", "verbose"),
    ("/a(?#note)b/ comment-group\n", "ab", "comment-group"),
    ("/a/X obsolete-X\n", "a", "obsolete-X"),
])
def test_pcre_syntax(tmp_path: Path, text: str, key: str, expected: str | None) -> None:
    assert table(tmp_path, text, "pcre").lookup(key) == expected


@pytest.mark.parametrize("text, parts", [
    ("plain", ["plain"]),
    ("$1", [1]),
    ("a${2}b$(3)c$$", ["a", 2, "b", 3, "c$"]),
    ("$$1", ["$1"]),
    ("$$$1", ["$", 1]),
    ("", []),
])
def test_result_parse(text: str, parts: list[str | int]) -> None:
    assert result_parse(text) == parts


@pytest.mark.parametrize("text, reason", [
    ("x$", 'bad replacement syntax: empty macro name: "x$"'),
    ("[$ ]", 'bad replacement syntax: empty macro name: "[$ ]"'),
    ("${1", 'bad replacement syntax: truncated macro reference: "${1"'),
    ("$1x", 'bad replacement syntax: non-numeric replacement index "1x"'),
    ("${a}", 'bad replacement syntax: non-numeric replacement index "a"'),
])
def test_result_parse_errors(text: str, reason: str) -> None:
    with pytest.raises(RuleError) as info:
        result_parse(text)
    assert info.value.reason == reason


# Each bad table, the ConfigError reason (strict), and Postfix's warning tail (lenient).
BAD_TABLES = [
    ("/a/q x\n", 1, 'unknown regexp option "q"', ": skipping this rule"),
    ("/a x\n", 1, 'no closing regexp delimiter "/"', ": skipping this rule"),
    ("xax y\n", 1, "ignoring unrecognized request", ""),
    ("/(a)/ $2\n", 1, 'out of range replacement index "2"', ": skipping this rule"),
    ("/a/ $0\n", 1, 'out of range replacement index "0"', ": skipping this rule"),
    ("!/(a)/ $1\n", 1, "$number found in negative match replacement text", ": skipping this rule"),
    ("/a/ x$\n", 1, 'bad replacement syntax: empty macro name: "x$"', ": skipping this rule"),
    ("/a[/ x\n", 1, "Unmatched [, [^, [:, [., or [=", ": skipping this rule"),
    ("/a/\n", 1, "no replacement text", None),
    ("if /b/\n/a/ y\n", 1, "IF has no matching ENDIF", ""),
    ("endif\n/a/ y\n", 1, "ignoring ENDIF without matching IF", ""),
    ("if /a/ junk\n/a/ y\nendif\n", 1, 'ignoring extra text after IF statement: "junk"', ""),
    ("if /a/\n/a/ y\nendif junk\n", 3, "ignoring extra text after ENDIF", ""),
]


@pytest.mark.parametrize("text, line, reason, tail", BAD_TABLES)
def test_strict_errors_name_file_and_line(tmp_path: Path, text: str, line: int, reason: str,
                                          tail: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        table(tmp_path, text)
    assert str(info.value) == f"{tmp_path / 'table'}, line {line}: {reason}"
    assert info.value.line == line


@pytest.mark.parametrize("text, line, reason, tail", BAD_TABLES)
def test_lenient_warns_like_postfix(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                    text: str, line: int, reason: str, tail: str | None) -> None:
    with caplog.at_level(logging.WARNING, logger="mta"):
        loaded = table(tmp_path, text, strict=False)
    expected = f"{tmp_path / 'table'}, line {line}: "
    expected += "no replacement text: using empty string" if tail is None else reason + tail
    assert caplog.messages[0] == expected
    assert loaded.lookup("a") in (None, "y", "")


@pytest.mark.parametrize("text, key, expected", [
    ("/a/q bad\n/a/ good\n", "a", "good"),
    ("if /b/\n/a/ y\n", "a", None),
    ("endif\n/a/ y\n", "a", "y"),
    ("/a/\n", "a", ""),
    ("if /a/ junk\n/a/ y\nendif\n", "a", "y"),
    ("if /b/\n/b/ in\nendif junk\n/a/ y\n", "a", "y"),
])
def test_lenient_lookup_after_bad_line(tmp_path: Path, text: str, key: str, expected: str | None) -> None:
    assert table(tmp_path, text, strict=False).lookup(key) == expected


def test_pcre_bad_pattern_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"table, line 1: error in regex at offset \d+: "):
        table(tmp_path, "/a(/ x\n", "pcre")


def test_inline_rules() -> None:
    regexp = open_map("regexp:{ {/a/ x}, {/b/ y} }")
    assert (regexp.lookup("a"), regexp.lookup("b"), regexp.lookup("c")) == ("x", "y", None)
    with pytest.raises(ConfigError) as info:
        open_map("pcre:{ {/a/ x}, {/b/q y} }")
    assert str(info.value) == '{ {/a/ x}, {/b/q y} }, line 2: unknown regexp option "q"'
    with pytest.raises(MapError):
        open_map("regexp:{ /a/ x }")


def test_map_attributes_and_missing_file(tmp_path: Path) -> None:
    loaded = table(tmp_path, "/a/ x\n")
    assert (loaded.fold_case, loaded.fixed) == (False, False)
    with pytest.raises(MapError, match="open .*/absent: No such file or directory"):
        open_map(f"pcre:{tmp_path / 'absent'}")


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
@pytest.mark.parametrize(("key", "found"), [("FOO", None), ("foo", None), ("1x", "Bogus"), ("<a>", "Bogus")])
def test_negated_bracket_is_case_insensitive(kind: str, key: str, found: str | None) -> None:
    """Postfix's default smtpd_forbidden_commands entry /^[^A-Z]/ must not match letters of either case."""
    from mta.maps import open_map

    assert open_map(f"{kind}:{{{{/^[^A-Z]/ Bogus}}}}").lookup(key) == found
