"""|command and mailbox_command deliveries: run a shell command as an unprivileged user.

DELIVERY RIGHTS. The command runs with the rights of the user on whose behalf
the delivery is made (the recipient, the alias table or :include: file owner);
when those are root's, or there is no user context, it runs as default_privs.
It never runs as root: subprocess sets the groups, gid and uid in the child
before exec, and the parent refuses uid 0 outright.

ENVIRONMENT (local(8)). PATH is reset to /usr/bin:/bin; variables named in
export_environment are passed on; HOME, SHELL, USER, LOGNAME, LOCAL, DOMAIN,
EXTENSION, RECIPIENT, ORIGINAL_RECIPIENT, SENDER and the CLIENT_* / SASL_*
attributes describe the delivery, each filtered through
command_expansion_filter. The command is started with /bin/sh -c (or
local_command_shell) in its own process group, in command_execution_directory
when set, else the user's home directory (Postfix uses the queue directory), with
the message on standard input after a From_ line, Return-Path:,
X-Original-To: and Delivered-To:.

EXIT STATUS. mta.pipe_command runs the command and maps its exit as Postfix's
pipe_command() does (sysexits; a leading RFC 3463 code in the output wins; a
signal defers; running past command_time_limit bounces).
"""

from __future__ import annotations

from mta import proto
from mta.local.delivered import copy_headers
from mta.local.expand import local_expand, local_macros
from mta.local.state import Delivery, RcptState, Result, UserAttr, text_filter
from mta.pipe_command import export_env, pipe_command

# Message attribute -> environment variable (local(8) "EXTERNAL COMMAND DELIVERY").
_CLIENT_ENV = {
    "client_name": "CLIENT_HOSTNAME", "client_address": "CLIENT_ADDRESS", "helo": "CLIENT_HELO",
    "protocol": "CLIENT_PROTOCOL", "sasl_method": "SASL_METHOD", "sasl_sender": "SASL_SENDER",
    "sasl_username": "SASL_USERNAME",
}


def command_run(command: str, *, uid: int, gid: int, env: dict[str, str], cwd: str | None,
                stdin: bytes, time_limit: float, shell: str = "") -> tuple[str, str]:
    """Run a shell command as uid/gid with stdin (mta.pipe_command); return (DSN, text).

    + cwd: working directory; None or an unusable one falls back to "/".
    + shell: local_command_shell (empty: /bin/sh -c).
    """
    argv = shell.split() + [command] if shell.strip() else ["/bin/sh", "-c", command]
    return pipe_command(argv, uid=uid, gid=gid, env=env, cwd=cwd or "/", stdin=stdin, time_limit=time_limit,
                        command=command, cwd_fallback="/")


def command_env(delivery: Delivery, rcpt: RcptState, usr: UserAttr | None) -> dict[str, str]:
    """The environment for a command delivered for rcpt with usr's home and shell."""
    settings = delivery.settings
    env = export_env(settings.export_environment)
    exported: dict[str, str | None] = {
        "HOME": usr.home if usr else None, "SHELL": usr.shell if usr else None,
        "USER": rcpt.user, "LOGNAME": rcpt.user, "SENDER": delivery.message.sender,
        "RECIPIENT": rcpt.address, "LOCAL": rcpt.local, "DOMAIN": rcpt.domain,
        "EXTENSION": rcpt.extension, "ORIGINAL_RECIPIENT": rcpt.original or None,
    }
    for attr, variable in _CLIENT_ENV.items():
        exported[variable] = delivery.message.attrs.get(attr) or None
    for variable, value in exported.items():
        if value is not None:
            env[variable] = text_filter(value, settings.command_filter)
    return env


def deliver_command(delivery: Delivery, rcpt: RcptState, command: str, usr: UserAttr | None) -> None:
    """Deliver one copy to command with usr's rights (default_privs for root or no user)."""
    settings = delivery.settings
    runner = usr if usr is not None and usr.uid != 0 else settings.default_privs
    key = f"command {rcpt.user}:{runner.uid} {command}"
    if delivery.duplicate(key):
        return
    cwd = usr.home if usr else None
    if settings.exec_directory:
        try:
            expanded = local_expand(settings.exec_directory, local_macros(rcpt, usr, settings.recipient_delimiter),
                                    settings.exec_directory_filter)
        except ValueError:
            delivery.record(key, Result(proto.TEMPFAIL, "4.3.5", "mail system configuration error", rcpt.address))
            return
        cwd = expanded.text
    data = copy_headers(delivery, rcpt, "command", from_=True) + delivery.message.content
    dsn, text = command_run(command, uid=runner.uid, gid=runner.gid or settings.default_privs.gid,
                            env=command_env(delivery, rcpt, usr), cwd=cwd, stdin=data,
                            time_limit=settings.command_time_limit, shell=settings.local_command_shell)
    if dsn.startswith("2"):
        delivery.record(key, Result(proto.OK, "2.0.0", f"delivered to command: {command}", rcpt.address))
    else:
        status = proto.TEMPFAIL if dsn.startswith("4") else proto.PERMFAIL
        delivery.record(key, Result(status, dsn, text, rcpt.address))
