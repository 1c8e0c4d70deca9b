"""Act with another user's effective ids for a while, then get the caller's back (Postfix's set_eugid)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Sequence


@contextmanager
def effective_ids(uid: int, gid: int, groups: Sequence[int] | None = None) -> Iterator[None]:
    """Run the body with effective uid/gid and supplementary groups (default: only gid).

    Real and saved ids stay as they were (root), so the previous effective ids,
    groups included, are restored afterwards even when the body raises. The
    kernel checks every file access in the body against the new ids. Effective
    ids are process-wide: callers switch from one thread at a time.
    """
    saved = (os.geteuid(), os.getegid(), os.getgroups())
    os.setgroups(list(groups) if groups else [gid])
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(saved[0])
        os.setegid(saved[1])
        os.setgroups(saved[2])
