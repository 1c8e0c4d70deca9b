"""Per-user forwarding: the recipient's ~/.forward file (forward_path).

forward_path (default ``$home/.forward${recipient_delimiter}${extension},
$home/.forward``) is expanded per recipient (mta.local.expand; an entry that
uses a macro without a value is skipped); the first entry that exists wins.

DELIVERY RIGHTS. The file is looked up and read in a child running as the
recipient, so a user cannot make root read a file for them. It must be a
regular file (not a symlink) owned by the recipient (or root) and not group-
or world-writable (Postfix only refuses world-writable ones); otherwise a
warning is logged and the mail goes to the mailbox. Its |command and /file
destinations run as the recipient (default_privs for root).

LOOPS. A user listed in their own .forward gets the mail in their mailbox;
an empty .forward (no destinations) means mailbox delivery too.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Callable

from mta import log
from mta.aliases import AliasItem
from mta.local import privs
from mta.local.alias import table_items
from mta.local.expand import local_expand, local_macros
from mta.local.state import Delivery, RcptState, UserAttr, user_find

FORBID_MODE = 0o022


def forward_paths(delivery: Delivery, rcpt: RcptState, usr: UserAttr) -> list[str]:
    """The candidate .forward paths for rcpt (whose account is usr), in forward_path order."""
    settings = delivery.settings
    macros = local_macros(rcpt, usr, settings.recipient_delimiter)
    paths: list[str] = []
    for entry in re.split(r"[,\s]+", settings.forward_path.strip()):
        if not entry:
            continue
        try:
            expanded = local_expand(entry, macros, settings.forward_filter)
        except ValueError as exc:
            log.msg_warn(f"forward_path: {exc}")
            continue
        if not expanded.undefined and expanded.text:
            paths.append(expanded.text)
    return paths


def forward_find(paths: list[str], uid: int) -> dict[str, Any]:
    """In a child running as the user: the first existing path, checked and read."""
    for path in paths:
        found = privs.table_file_read(path, uid, False, FORBID_MODE)
        if not found.get("missing"):
            return dict(found, path=path)
    return {"missing": True}


def deliver_dotforward(delivery: Delivery, rcpt: RcptState,
                       token: Callable[[Delivery, RcptState, AliasItem], None]) -> bool:
    """Deliver through rcpt's .forward file; False when there is none (or it is not usable)."""
    if not delivery.settings.forward_path.strip():
        return False
    usr = user_find(rcpt.user)
    if usr is None:
        return False
    paths = forward_paths(delivery, rcpt, usr)
    if not paths:
        return False
    try:
        found = privs.run_as(privs.creds_of(usr.uid, usr.gid), forward_find, paths, usr.uid)
    except privs.PrivsError as exc:
        found = {"path": paths[0], "warning": f"cannot read {paths[0]}: {exc}"}
    if found.get("missing"):
        return False
    path = found["path"]
    if f"forward {path}" in delivery.seen:
        # Reached again while expanding it: the user is in their own .forward.
        return f"forward-done {path}" in delivery.seen
    delivery.seen.add(f"forward {path}")
    if "warning" in found:
        log.msg_warn(found["warning"])
        return False
    items = table_items(found["text"])
    if not items:
        return False
    child = replace(rcpt, exp_type="forward", exp_from=rcpt.local, usr=usr, level=rcpt.level + 1)
    for item in items:
        token(delivery, child, item)
    delivery.seen.add(f"forward-done {path}")
    return True
