"""Unit tests for mta.expand: Postfix's $name macro forms, one case per branch."""

from __future__ import annotations

import pytest

from mta.errors import ConfigError
from mta.expand import Expander, ExpandError, referenced_names

PARAMS = {
    "a": "9",
    "empty": "",
    "host": "gw.example.com",
    "chain1": "$chain2 end",
    "chain2": "${host}",
    "loop1": "$loop2",
    "loop2": "${loop1}",
    "self": "x $self",
    "level": "3.6",
}


def expand(text: str) -> str:
    return Expander(PARAMS.get).expand(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("$a", "9"),
        ("${a}", "9"),
        ("$(a)", "9"),
        ("${ a }", "9"),
        ("$a.b ${a}_x $(a)y", "9.b 9_x 9y"),
        ("$chain1", "gw.example.com end"),
        ("$$", "$"),
        ("$${a} cost$$", "${a} cost$"),
        ("[$undefined]", "[]"),
        ("${a?set}", "set"),
        ("${empty?set}", ""),
        ("${undefined?set}", ""),
        ("${a:unset}", ""),
        ("${empty:unset}", "unset"),
        ("${a?x y}", "x y"),
        ("${a?$host}", "gw.example.com"),
        ("${a?{braced}}", "braced"),
        ("${a ? {yes} : {no}}", "yes"),
        ("${empty?{yes}:{no}}", "no"),
        ("${a?${empty:inner}}", "inner"),
        ("$(a?q)", "q"),
        ("${{$a} < {10} ? {lt} : {ge}}", "lt"),
        ("${{$a} >= {10} ? {ge} : {lt}}", "lt"),
        ("${{abc} < {abd} ? {t} : {f}}", "t"),
        ("${{10} > {9} ? {numeric} : {string}}", "numeric"),
        ("${{x} == {x}}", "true"),
        ("${{x} != {x}}", ""),
        ("${{x} == {y} ? {t}}", ""),
        ("${{ 1 } == {1} ? {t} : {f}}", "f"),
        ("${{$level} <level {3.10} ? {older} : {newer}}", "older"),
        ("${{3.6} >=level {3.6} ? {yes} : {no}}", "yes"),
        ("${{2} <=level {1} ? {yes} : {no}}", "no"),
        ("${{$level} >level {2} ? {yes}}", "yes"),
    ],
)
def test_expansion(text: str, expected: str) -> None:
    assert expand(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cost $ 5", "empty macro name"),
        ("trailing $", "empty macro name"),
        ("${a", "truncated macro reference"),
        ("$(a}", "truncated macro reference"),
        ("${(a)}", "attribute name syntax error"),
        ("${a!x}", "attribute name syntax error"),
        ("${a?{x}y}", '":" expected'),
        ("${a:{x}:{y}}", '":" expected'),
        ("${{a} eq {a}?{t}}", '"==" or "!="'),
        ("${{a} == {a} {t}}", '"?" expected'),
        ("${{a} == {a} ? {t} : {f} junk}", "garbage"),
        ("${{a} == b}", '"{" expected'),
        ("$loop1", "unreasonable macro call nesting"),
        ("$self", "unreasonable macro call nesting"),
        ("${{x} <level {3.a} ? {t}}", "invalid compatibility level"),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ExpandError, match=message.replace("?", r"\?").replace("{", r"\{")):
        expand(text)


def test_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        expand("${a")


def test_undefined_callback_names_each_reference() -> None:
    seen: list[str] = []
    Expander(PARAMS.get, seen.append).expand("$nope ${other?x} ${a}")
    assert seen == ["nope", "other"]


def test_values_are_memoised_and_lazy() -> None:
    calls: list[str] = []

    def lookup(name: str) -> str | None:
        calls.append(name)
        return PARAMS.get(name)

    expander = Expander(lookup)
    assert expander.expand("$chain1 $chain1") == "gw.example.com end gw.example.com end"
    assert calls.count("chain1") == 1


def test_referenced_names() -> None:
    assert referenced_names("$a ${b?x} $(c) $${notref} ${ d }") == {"a", "b", "c", "d"}
