"""smtpd: the SMTP server daemon (Postfix's smtpd(8)): one ESMTP session per service() call.

The master accepts nothing itself for this service: it forks smtpd processes
that share the listening socket, and each process serves one connection at a
time (SERVER = "single"), so concurrency is the number of processes. pre_init
reads main.cf into SmtpdSettings and opens every table (mynetworks,
mydestination, relay_domains, local_recipient_maps with the passwd user
names); post_init does nothing that touches the file system; service() runs
one SmtpSession and closes the connection. Messages go to cleanup through
mta.clients.cleanup_submit() with these attributes: client_name,
client_address, client_port, helo (when given), protocol (SMTP or ESMTP),
origin ("smtpd") and encoding (7bit/8bit when BODY= was given). cleanup
builds the Received: header from them.

MODULES. session (the command loop, replies, session logging), server (the
smtp_<VERB> commands), unoffered (extensions not offered), chat (buffered
lines, pipelined replies, log text), token (command words, envelope
addresses), data (DATA content, hand-off to cleanup), policy (relay control,
local recipients, queue space), settings (main.cf parameters).

SECURITY. Everything this daemon reads from the network is untrusted: command
lines are cut at line_length_limit, message content is bounded by
message_size_limit and only buffered, never interpreted, and every read and
write is bounded by smtpd_timeout. The daemon runs as mail_owner and, with
chroot = y in master.cf, inside queue_directory; nothing is opened after
pre_init except the cleanup socket (``public/cleanup``) and anvil's
(``private/anvil``, which counts each client's connections across every
smtpd process: smtpd_client_connection_count_limit and
smtpd_client_connection_rate_limit). What a client may do is decided by the
restriction lists (mta.smtpd.restrictions) and relay control
(mta.smtpd.policy).

WHY NOT AIOSMTPD. aiosmtpd (aio-libs) serves many sessions from one asyncio
event loop with per-command handler hooks. That model fights the master's:
one process per session, forked, chrooted and privilege-dropped, with
maxproc as the concurrency limit and a crash confined to one session. Its
replies and line handling also differ from Postfix's (``500 Error: command
"X" not recognized``, ``500 Line too long`` instead of keeping long DATA
lines whole, no error counting, no forbidden-command hang-up), and the
restriction language and SMTP smuggling defences (bare LF, ``<LF>.<LF>``)
need control of each line as it is read. So the protocol layer is this small
blocking state machine, one session per process.

MEASURED (2 CPUs, loopback, Postfix's smtp-source sending 1 KB messages, one
message per connection; cleanup replaced by an in-memory stub on both sides,
aiosmtpd 1.4.6 with a handle_DATA that only answers 250): one client at a
time, this server 1640 messages/s, aiosmtpd 800/s; 20 parallel clients,
this server as 20 processes 4400/s, aiosmtpd's single event loop 1800/s.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import TYPE_CHECKING

from mta.clients import AnvilClient
from mta.smtpd.policy import RecipientPolicy
from mta.smtpd.restrictions import Restrictions
from mta.smtpd.server import SmtpSession
from mta.smtpd.settings import SmtpdSettings

if TYPE_CHECKING:
    from mta.skeleton import DaemonContext

SERVER = "single"


def pre_init(ctx: "DaemonContext") -> None:
    """Before chroot and privilege drop: read the settings and open every table.

    Raises ConfigError for a bad parameter (the master logs it and throttles
    the service); a table that cannot be opened is only a warning (see policy).
    """
    policy = RecipientPolicy.from_config(ctx.cfg)  # first: a bad mynetworks is reported as such
    ctx.state["settings"] = dataclasses.replace(SmtpdSettings.from_config(ctx.cfg), service_name=ctx.service.service)
    ctx.state["policy"] = policy
    ctx.state["restrictions"] = Restrictions(ctx.cfg, policy)


def post_init(ctx: "DaemonContext") -> None:
    """After chroot: nothing to open; the cleanup socket is reached per message."""


def service(conn: socket.socket, ctx: "DaemonContext") -> None:
    """Serve one SMTP session on an accepted connection, then close it."""
    try:
        anvil = ctx.state.get("anvil")
        if anvil is None:
            anvil = ctx.state["anvil"] = AnvilClient(ctx.queue_dir)  # kept for the process's life
        SmtpSession(conn, ctx.state["settings"], ctx.state["policy"], ctx.queue_dir,
                    restrictions=ctx.state["restrictions"], anvil=anvil).run()
    finally:
        try:
            conn.close()
        except OSError:
            pass
