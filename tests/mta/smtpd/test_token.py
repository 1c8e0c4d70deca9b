"""Tests for mta.smtpd.token: command words (Postfix's smtpd_token.in cases) and envelope addresses."""

from __future__ import annotations

import random

import pytest

from mta.smtpd.token import (
    address_domain_valid,
    extract_addr,
    extract_addr_scan,
    smtpd_token,
    smtpd_token_scan,
    valid_address_literal,
    valid_hostname,
)


@pytest.mark.parametrize("line, words", [
    ("mail from:<wietse@porcupine.org>", ["mail", "from:", "<wietse@porcupine.org>"]),
    ('mail from:<"wietse venema"@porcupine.org>', ["mail", "from:", '<"wietse venema"@porcupine.org>']),
    ("mail from:wietse@porcupine.org", ["mail", "from:", "wietse@porcupine.org"]),
    ("mail from:<wietse @ porcupine.org>", ["mail", "from:", "<wietse @ porcupine.org>"]),
    ('mail from:<"wietse venema" <wietse@porcupine.org>>',
     ["mail", "from:", '<"wietse venema" <wietse@porcupine.org>>']),
    ('mail from:"wietse venema"@porcupine.org', ["mail", "from:", '"wietse venema"@porcupine.org']),
    ("mail from:wietse\\ venema@porcupine.org", ["mail", "from:", "wietse\\ venema@porcupine.org"]),
    ("MAIL FROM: <a@b> SIZE=10", ["MAIL", "FROM:", "<a@b>", "SIZE=10"]),
    ("RCPT TO:<a@b>", ["RCPT", "TO:", "<a@b>"]),
    ("  NOOP   \t ", ["NOOP"]),
    ("", []),
    ("X-Header: value", ["X-Header:", "value"]),
    ("mail to:<wietse@[stuff>", ["mail", "to:", "<wietse@[stuff>"]),
])
def test_smtpd_token(line: str, words: list[str]) -> None:
    tokens = smtpd_token(line)
    assert [t.text for t in tokens] == words
    assert not any(t.error for t in tokens)


@pytest.mark.parametrize("line", ['mail to:<"wietse venema>', 'mail to:<wietse@["stuff]>', "mail from:<a@b"])
def test_smtpd_token_unterminated_is_an_error(line: str) -> None:
    assert smtpd_token(line)[-1].error


@pytest.mark.parametrize("arg, allow_empty, expected", [
    ("<user@example.com>", False, "user@example.com"),
    ("user@example.com", False, "user@example.com"),
    ("<>", True, ""),
    ("<>", False, None),
    ("<@a.example,@b.example:user@example.com>", False, "user@example.com"),
    ('<"John Doe" <john@example.com>>', False, "john@example.com"),
    ('<"odd name"@example.com>', False, "odd name@example.com"),
    ("<user@example.com (comment)>", False, "user@example.com"),
    ("<user @ example . com>", False, "user@example.com"),
    ("<a@x.example, b@y.example>", False, None),
    ("<user@[192.0.2.1]>", False, "user@[192.0.2.1]"),
    ("<user@[IPv6:2001:db8::1]>", False, "user@[IPv6:2001:db8::1]"),
    ("<user@[192.0.2.300]>", False, None),
    ("<user@192.0.2.1>", False, None),            # a bare address is not a domain
    ("<user@-bad.example>", False, None),
    ("<user@bad..example>", False, None),
    ("<user@exämple.com>", False, None),          # no SMTPUTF8
    ("<user@example.com.>", False, "user@example.com."),
    ("<postmaster>", False, "postmaster"),
    ("<user%remote@example.com>", False, "user%remote@example.com"),
    ("<user\x01@example.com>", False, None),      # control characters never reach the queue
])
def test_extract_addr(arg: str, allow_empty: bool, expected: str | None) -> None:
    assert extract_addr(arg, allow_empty=allow_empty) == expected


@pytest.mark.parametrize("arg, expected", [
    ("<user@example.com>", "user@example.com"),
    ("user@example.com", None),                   # strict: must be in <>
    ("<user@example.com (comment)>", None),
    ("<>", ""),
])
def test_extract_addr_strict(arg: str, expected: str | None) -> None:
    assert extract_addr(arg, allow_empty=True, strict=True) == expected


@pytest.mark.parametrize("name, valid", [
    ("example.com", True), ("a-b.example", True), ("under_score.example", True), ("x", True),
    ("-a.example", False), ("a-.example", False), ("a..b", False), ("", False),
    ("1.2.3.4", False), ("1.2.3.example", True), ("a" * 64 + ".example", False),
])
def test_valid_hostname(name: str, valid: bool) -> None:
    assert valid_hostname(name) is valid


@pytest.mark.parametrize("text, valid", [
    ("[192.0.2.1]", True), ("[IPv6:::1]", True), ("[ipv6:2001:db8::1]", True),
    ("[2001:db8::1]", False), ("[192.0.2]", False), ("192.0.2.1", False), ("[]", False),
])
def test_valid_address_literal(text: str, valid: bool) -> None:
    assert valid_address_literal(text) is valid


def test_address_without_domain_is_valid() -> None:
    assert address_domain_valid("user") and address_domain_valid("user@")


# The fast paths (plain lines, simple MAIL/RCPT lines, dot-atom addresses) must
# give exactly what the general scanners give, for any input.
_PIECES = ["MAIL", "RCPT", "mail", " ", "\t", "FROM:", "TO:", "from:", ":", "<", ">", '"', "\\",
           "a", "b.c", "@", "x.example", "-", "..", "SIZE=10", "BODY=8BITMIME", "1", "[", "]", ",", "\x1c"]


def _random_lines(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    lines = ["MAIL FROM:<a@b.example> SIZE=10", "RCPT TO: <a.b@c-d.example>", "mail from:<>", "EHLO x",
             "RCPT TO:<a@b>x", "MAIL FROM:<a@b>:c", "MAIL  FROM:<<a@b>>"]
    for _ in range(count):
        lines.append("".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 12))))
    return lines


def test_smtpd_token_fast_path_agrees_with_scanner() -> None:
    for line in _random_lines(1, 5000):
        assert smtpd_token(line) == smtpd_token_scan(line), line


@pytest.mark.parametrize("allow_empty", [True, False])
@pytest.mark.parametrize("strict", [True, False])
def test_extract_addr_fast_path_agrees_with_scanner(allow_empty: bool, strict: bool) -> None:
    rng = random.Random(2)
    local = ["a", "a.b", "a..b", ".a", "a.", "o'k", "x+y", "-", "a b", '"q"', "é"]
    domain = ["b.example", "b", "1.2.3.4", "-b.example", "b-.example", "b..example", "b.example.",
              "a_b.example", "x" * 64 + ".example", "[192.0.2.1]", ""]
    for _ in range(3000):
        text = f"{rng.choice(local)}@{rng.choice(domain)}"
        arg = f"<{text}>" if rng.random() < 0.7 else text
        inner = arg[1:-1] if arg.startswith("<") and arg.endswith(">") else arg
        assert (extract_addr(arg, allow_empty=allow_empty, strict=strict)
                == extract_addr_scan(arg, inner, allow_empty=allow_empty, strict=strict)), arg


def test_stray_angle_bracket_after_the_address_does_not_crash() -> None:
    """Found by tests/mta/smtpd/test_fuzz.py: "<a@b> <" raised ValueError inside extract_addr."""
    assert extract_addr("x <a@b.example> <", allow_empty=False) == "a@b.example"
    assert extract_addr_scan("x <a@b.example> <", "x <a@b.example> <", allow_empty=False, strict=True) is None
