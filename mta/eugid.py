"""Act with another user's effective ids for a while, then get the caller's back (Postfix's set_eugid).

effective_ids() switches from root to a user; root_ids() is the way back for
a process that keeps root's real and saved ids but works with another
user's effective ids most of the time (pipe keeps mail_owner's, as Postfix's
pipe(8) does).
"""

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


@contextmanager
def root_ids() -> Iterator[None]:
    """Run the body with root's effective ids, then go back to the caller's (uid, gid and groups).

    Needs root as the real or saved uid, which a daemon started as root keeps
    after effective_ids() or a seteuid() drop. A process that is already root,
    or never was, runs the body unchanged.
    """
    saved = (os.geteuid(), os.getegid(), os.getgroups())
    real, _, kept = os.getresuid()
    if saved[0] == 0 or 0 not in (real, kept):
        yield
        return
    os.seteuid(0)
    try:
        yield
    finally:
        os.setgroups(saved[2])
        os.setegid(saved[1])
        os.seteuid(saved[0])
