"""Tests for mta.maps.pattern: ERE and PCRE translation errors and unsupported syntax."""

from __future__ import annotations

import re

import pytest

from mta.maps.pattern import ere_translate, pcre_translate


@pytest.mark.parametrize("pattern, message", [
    ("\\p{L}", "\\p is not supported"),
    ("a\\Kb", "\\K is not supported"),
    ("(?|(a)|(b))", "unsupported group syntax"),
    ("(?R)", "inline flags \"R\" are not supported"),
    ("(*FAIL)", "backtracking verbs"),
    ("[a", "missing terminating ] for character class"),
])
def test_pcre_unsupported(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        pcre_translate(pattern)


@pytest.mark.parametrize("pattern, message", [
    ("*a", "Invalid preceding regular expression"),
    ("{a", "Invalid preceding regular expression"),
    ("(?i)a", "Invalid preceding regular expression"),
    ("a{", "Unmatched \\{"),
    ("a{x", "Unmatched \\{"),
    ("x{2,1}", "Invalid content of \\{\\}"),
    ("a{99999}", "Regular expression too big"),
    ("(a", "Unmatched ( or \\("),
    ("a[", "Unmatched [, [^, [:, [., or [="),
    ("[[:nope:]]", "Invalid character class name"),
    ("[z-a]", "Invalid range end"),
    ("\\1(a)", "Invalid back reference"),
    ("a\\", "Trailing backslash"),
])
def test_ere_errors(pattern: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ere_translate(pattern)
    assert str(info.value) == message


def test_bre_unmatched_close() -> None:
    with pytest.raises(ValueError, match="Unmatched"):
        ere_translate("a\\)", extended=False)
