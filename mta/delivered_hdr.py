"""Delivered-To: headers of a message, for mail forwarding loop detection (Postfix's delivered_hdr.c).

local(8) and pipe(8) with flag D bounce a message that already carries
``Delivered-To: <recipient>`` in its primary header block with ``5.4.6 mail
forwarding loop for <recipient>``; both read the headers through
delivered_find().
"""

from __future__ import annotations


def _unfold(parts: list[bytes]) -> str:
    return b" ".join(part.strip() for part in parts).strip().decode("utf-8", "replace").lower()


def delivered_find(content: bytes) -> frozenset[str]:
    """Lowercased values of every Delivered-To: header in the primary header block.

    >>> sorted(delivered_find(b"Subject: x\\nDelivered-To: Bob@Example.com\\n\\nDelivered-To: no\\n"))
    ['bob@example.com']
    """
    found: set[str] = set()
    current: list[bytes] | None = None
    for line in content.split(b"\n"):
        if line[:1] in (b" ", b"\t") and line.strip():
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            found.add(_unfold(current))
            current = None
        if not line.strip():
            break
        name, colon, value = line.partition(b":")
        if not colon:
            break  # not a header: the body starts here (no blank line)
        if name.strip().lower() == b"delivered-to":
            current = [value]
    if current is not None:
        found.add(_unfold(current))
    return frozenset(found)
