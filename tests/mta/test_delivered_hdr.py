"""Tests for mta.delivered_hdr: the Delivered-To: values of the primary header block."""

from __future__ import annotations

from mta.delivered_hdr import delivered_find


def test_delivered_find_reads_only_the_header_block() -> None:
    content = b"Received: x\nDelivered-To:\n  Folded@Example.COM\nDELIVERED-TO: a@b\n\nDelivered-To: c@d\n"
    assert delivered_find(content) == {"folded@example.com", "a@b"}
    assert delivered_find(b"no header line\nDelivered-To: x@y\n") == frozenset()
    assert delivered_find(b"Subject: none\n\nbody\n") == frozenset()
