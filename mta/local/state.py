"""Local delivery state: settings, the message, the recipient being expanded, rights and results.

Postfix's local(8) passes a LOCAL_STATE and a USER_ATTR by value down its
recursion (alias -> :include: -> address -> .forward -> mailbox). Here the
per-level part is the frozen RcptState (copied with dataclasses.replace), and
the per-delivery part is Delivery: the results of the top-level recipient
being delivered and the duplicate filter shared by the whole request.
"""

from __future__ import annotations

import errno
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from mta import proto
from mta.maps import Map

# Nesting limit for alias, :include: and .forward expansion. Postfix counts
# several levels per hop and stops at 100; one level per hop here.
NESTING_LIMIT = 50


@dataclass(frozen=True)
class UserAttr:
    """Delivery rights: whose uid/gid a file or command delivery runs with (USER_ATTR)."""

    uid: int
    gid: int
    home: str
    shell: str
    logname: str

    @classmethod
    def from_pw(cls, pw: pwd.struct_passwd) -> "UserAttr":
        """Rights of a passwd entry."""
        return cls(pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell, pw.pw_name)


def user_find(name: str) -> UserAttr | None:
    """The passwd entry for a user name, or None when there is none."""
    try:
        return UserAttr.from_pw(pwd.getpwnam(name))
    except KeyError:
        return None


def user_by_uid(uid: int) -> UserAttr | None:
    """The passwd entry for a uid, or None when there is none."""
    try:
        return UserAttr.from_pw(pwd.getpwuid(uid))
    except KeyError:
        return None


@dataclass(frozen=True)
class Result:
    """The outcome of one final delivery (mailbox, file, command, forward).

    + status: 0 sent, 4 deferred, 5 bounced (proto.OK/TEMPFAIL/PERMFAIL).
    + dsn, reason: as Postfix logs them: ``2.0.0`` ``delivered to maildir``.
    + target: the recipient address this delivery was made for (logged as to=).
    """

    status: int
    dsn: str
    reason: str
    target: str = ""


def mbox_dsn(err: int, default: str) -> str:
    """Postfix's mbox_dsn(): try-again errors 4.2.0, a full disk 4.3.0, a full mailbox 5.2.2."""
    if err in (errno.EAGAIN, errno.ESTALE):
        return "4.2.0"
    if err == errno.ENOSPC:
        return "4.3.0"
    if err in (errno.EDQUOT, errno.EFBIG):
        return "5.2.2"
    return default


def result_status(dsn: str) -> int:
    """Status for a DSN: 4.x.x defers, 2.x.x is sent, anything else bounces."""
    return {"2": proto.OK, "4": proto.TEMPFAIL}.get(dsn[:1], proto.PERMFAIL)


@dataclass(frozen=True)
class AliasTable:
    """One alias_maps table and the uid of its owner (delivery rights for its |command and /file)."""

    map: Map
    owner: int


@dataclass
class Settings:
    """The main.cf parameters local(8) uses, read once in pre_init."""

    queue_dir: Path
    myorigin: str
    mydestination: list[str]
    mydestination_maps: list[Map]
    recipient_delimiter: str
    owner_request_special: bool
    alias_tables: list[AliasTable]
    alias_error: str
    forward_path: str
    forward_filter: str
    home_mailbox: str
    mail_spool_directory: str
    mailbox_command: str
    allow_commands: frozenset[str]
    allow_files: frozenset[str]
    prepend_delivered: frozenset[str]
    default_privs: UserAttr
    command_time_limit: int
    command_filter: str
    exec_directory: str
    exec_directory_filter: str
    export_environment: list[str]
    local_command_shell: str
    mailbox_lock: frozenset[str]
    lock_attempts: int
    lock_delay: float
    stale_lock_time: int
    strict_mailbox_ownership: bool
    mailbox_size_limit: int
    luser_relay: str


@dataclass
class Message:
    """The queued message as local(8) sees it.

    + delivered_to: Delivered-To: header values, lowercased, for loop detection.
    """

    queue_id: str
    sender: str
    arrival: float
    content: bytes
    attrs: dict[str, str]
    delivered_to: frozenset[str]


@dataclass(frozen=True)
class RcptState:
    """The recipient at one level of expansion (copied, never changed, as Postfix's by-value state).

    + address: the full address being delivered (``bob@example.com``).
    + original: the top-level original recipient (X-Original-To, ORIGINAL_RECIPIENT).
    + local, user, extension, domain: address parts; local is folded to lowercase,
      user is local without the extension.
    + level: expansion depth.
    + exp_type: "" (top), "alias", "forward" or "include": what the current
      destinations came from (allow_mail_to_commands / allow_mail_to_files).
    + exp_from: the name being expanded; that name found in its own expansion is
      delivered to the user instead.
    + usr: rights for |command and /file destinations; None means no user context
      (root-owned alias table), so default_privs applies.
    """

    address: str
    original: str
    local: str
    user: str
    extension: str | None
    domain: str | None
    level: int = 0
    exp_type: str = ""
    exp_from: str = ""
    usr: UserAttr | None = None


@dataclass
class Delivery:
    """One top-level recipient's delivery within a request.

    + top: the recipient as the request named it (Delivered-To: with frozen_delivered_to).
    + results: final delivery results for this recipient.
    + seen: expansion-level duplicate filter (recipients, :include: and .forward files).
    + done: request-wide duplicate filter of final destinations -> their result
      (None while in progress); a destination reached again reuses the result.
    + forwards: non-local addresses to resubmit through cleanup.
    """

    settings: Settings
    message: Message
    top: str
    original: str
    done: dict[str, Result | None]
    results: list[Result] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    forwards: list[str] = field(default_factory=list)

    def record(self, key: str, result: Result) -> None:
        """Add a final result and remember it under its duplicate-filter key."""
        self.done[key] = result
        self.results.append(result)

    def duplicate(self, key: str) -> bool:
        """True when key was delivered before in this request (its result is reused); else claim it."""
        if key in self.done:
            previous = self.done[key]
            if previous is not None:
                self.results.append(previous)
            return True
        self.done[key] = None
        return False

    def fail(self, rcpt: RcptState, dsn: str, reason: str) -> None:
        """Record a failure (4.x.x defer or 5.x.x bounce) for rcpt."""
        self.results.append(Result(result_status(dsn), dsn, reason, rcpt.address))

    def sent(self, rcpt: RcptState, reason: str, dsn: str = "2.0.0") -> None:
        """Record a success for rcpt that needs no duplicate-filter key."""
        self.results.append(Result(proto.OK, dsn, reason, rcpt.address))


def delivery_summary(results: list[Result]) -> Result:
    """One status for a recipient from its final results: any deferral, else any bounce, else sent.

    Postfix logs and reports each final delivery separately; the queue manager
    gets one status per recipient, so a deferral wins (the recipient is tried
    again), then a bounce.
    """
    for status in (proto.TEMPFAIL, proto.PERMFAIL, proto.OK):
        for result in results:
            if result.status == status:
                return result
    return Result(proto.OK, "2.0.0", "alias expanded to no destinations")


def text_filter(value: str, allowed: str) -> str:
    """Replace characters not in allowed with ``_`` (command_expansion_filter and friends).

    >>> text_filter("a;b c", "abc")
    'a_b_c'
    """
    return "".join(ch if ch in allowed else "_" for ch in value)
