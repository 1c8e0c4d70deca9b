"""The SMTP command loop: read a command, dispatch it to smtp_<VERB>, count errors, reply, log the session.

COMMANDS. Each verb has a method ``smtp_<VERB>(words) -> bool`` that sends its
own reply and returns False for an error; the loop counts errors (Postfix's
smtpd_soft_error_limit sleeps, smtpd_hard_error_limit hangs up) and keeps
per-command totals for the ``disconnect from`` log line. A protocol error is
a reply, and the session goes on.

PIPELINING. Replies are sent when the input runs dry (chat.SmtpStream). Input
sent ahead where RFC 2920 forbids it (before EHLO, or after HELO, EHLO, DATA,
NOOP, VRFY) is logged once as "improper command pipelining", and ends the
session with smtpd_forbid_unauth_pipelining = yes, as in Postfix 3.7.10+.

LOGGING. ``connect from``, policy rejects (``NOQUEUE: reject: RCPT from
...; from=<...> to=<...> proto=ESMTP helo=<...>``), ``timeout after X``,
``lost connection after DATA (N bytes)``, ``too many errors after X`` and the
``disconnect from ... commands=N`` totals, as Postfix's smtpd writes them.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable

from mta import log
from mta.clients import AnvilClient, cleanup_submit
from mta.proto import ProtocolError
from mta.smtpd.chat import (
    SessionLost,
    SessionTimeout,
    SmtpStream,
    client_names,
    command_stats,
    escape,
    namaddr,
    printable,
    reply_soft_bounce,
    whatsup,
)
from mta.smtpd.data import MessageReader
from mta.smtpd.policy import RecipientPolicy
from mta.smtpd.restrictions import CLIENT, CheckState, Restrictions
from mta.smtpd.settings import SmtpdSettings
from mta.smtpd.token import smtpd_token

# Postfix's command table order, which is also the order of the disconnect statistics.
COMMANDS = ("helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt", "data",
            "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown")
# Commands after which a client must wait for the reply (RFC 2920 section 3.1).
LAST_COMMANDS = frozenset({"helo", "ehlo", "data", "noop", "vrfy"})
# Commands that count towards smtpd_junk_command_limit.
JUNK_COMMANDS = frozenset({"helo", "ehlo", "rset", "noop", "vrfy", "etrn"})
# Commands smtpd_tls_security_level = encrypt allows before STARTTLS (Postfix's SMTPD_CMD_FLAG_PRE_TLS).
PRE_TLS_COMMANDS = frozenset({"helo", "ehlo", "starttls", "rset", "noop", "quit", "xclient", "xforward"})
HEADER_NAME = frozenset(chr(c) for c in range(33, 127)) - {":"}

Submit = Callable[..., str]


class SessionLoop:
    """The command loop of one SMTP session; subclasses add the smtp_<VERB> handlers.

    + conn: the accepted connection.
    + settings, policy: from pre_init (SmtpdSettings, RecipientPolicy).
    + queue_dir: as this process sees it, for cleanup's socket.
    + submit: cleanup_submit, or a test double with its signature.
    """

    def __init__(self, conn: socket.socket, settings: SmtpdSettings, policy: RecipientPolicy,
                 queue_dir: Path, submit: Submit = cleanup_submit,
                 restrictions: Restrictions | None = None, anvil: AnvilClient | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.restrictions = restrictions
        self.denied: str | None = None  # smtpd_delay_reject = no and the client list rejected
        self.queue_dir = queue_dir
        self.submit = submit
        self.stream = SmtpStream(conn, settings.timeout)
        self.name, self.reverse_name, self.address, self.port = client_names(conn, settings.peername_lookup)
        self.namaddr = namaddr(self.name, self.address, self.port, settings.client_port_logging)
        self.trusted: bool | None = None
        self.helo: str | None = None
        self.protocol = "SMTP"
        self.errors = 0
        self.junk = 0
        self.hangup = False
        self.where = "CONNECT"
        self.reason: str | None = None
        self.counts: dict[str, list[int]] = {name: [0, 0] for name in COMMANDS}
        self.reader: MessageReader | None = None
        self.ill_pipelining = False
        self.tls_active = False
        self.tls_info = ""
        self.anvil = anvil  # the process's connection to anvil (None: no per-client limits)
        self.anvil_ident: str | None = None  # what this session counted there
        exclusions = settings.bare_newline_exclusions
        self.bare_exempt = bool(exclusions is not None and exclusions.match(self.address, self.name))
        self.mail_reset()

    # -- session --------------------------------------------------------------

    def run(self) -> None:
        """Greet, serve commands until QUIT or trouble, then log the disconnect."""
        log.msg_info(f"connect from {self.namaddr}")
        self.trusted = self.policy.client_trusted(self.address, self.name)
        try:
            limited = self._limits()
            early = None if limited else self.check_early(CLIENT)
            if limited:
                self.reply(f"421 4.7.0 {self.settings.myhostname} Error: too many connections from {self.address}")
            elif early is not None:
                self.denied = f"503 5.7.0 Error: access denied for {self.name}[{self.address}]"
                self.reject(early)
            else:
                self.reply(f"220 {self.settings.banner}")
            self._loop()
            self.stream.flush()
        except SessionTimeout:
            self.reason = "timeout"
            try:
                self.stream.reply(f"421 4.4.2 {self.settings.myhostname} Error: timeout exceeded")
                self.stream.flush()
            except (SessionTimeout, SessionLost):
                pass
        except SessionLost:
            self.reason = "lost connection"
        finally:
            if self.anvil is not None and self.anvil_ident is not None:
                self.anvil.disconnect(self.anvil_ident)
        self._log_end()

    def _limits(self) -> bool:
        """Count this connection at anvil; True when it is over a per-client limit (then log why)."""
        settings = self.settings
        if self.anvil is None or not (settings.connection_count_limit or settings.connection_rate_limit):
            return False
        exceptions = settings.event_limit_exceptions
        if exceptions is not None and exceptions.match(self.address, self.name):
            return False
        ident = f"{settings.service_name}:{self.address}"
        try:
            count, rate = self.anvil.connect(ident)
        except (OSError, ProtocolError) as exc:
            log.msg_warn(f"connect to {self.anvil.path}: {exc}; no per-client connection limits for this session")
            return False
        self.anvil_ident = ident
        for what, value, limit in (("concurrency", count, settings.connection_count_limit),
                                   ("rate", rate, settings.connection_rate_limit)):
            if limit and value > limit:
                log.msg_warn(f"Connection {what} limit exceeded: {value} from {self.namaddr} "
                             f"for service {settings.service_name}")
                self.hangup = True
                return True
        return False

    def _loop(self) -> None:
        settings = self.settings
        while not self.hangup:
            if self.errors >= settings.hard_error_limit:
                self.reason = "too many errors"
                self.reply(f"421 4.7.0 {settings.myhostname} Error: too many errors")
                break
            raw, complete = self.stream.read_command(settings.line_length_limit)
            if self.stream.bare_lf and settings.bare_newline == "reject" and not self.bare_exempt:
                self.reject(self.bare_lf_reply())
                self.reason = "bare <LF>"
                break
            if not complete:
                log.msg_warn(f"{self.namaddr}: request longer than {settings.line_length_limit}: "
                             f"{printable(raw[:30].decode('utf-8', 'replace'))}...")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                if settings.smtputf8_enable:
                    self.reply("500 5.5.2 Error: bad UTF-8 syntax")
                    self.errors += 1
                    continue
                line = raw.decode("utf-8", "surrogateescape")
            words = smtpd_token(line)
            if not words:
                self.reply("500 5.5.2 Error: bad syntax")
                self.errors += 1
                continue
            verb = words[0].text.lower()
            if self.denied is not None and verb != "quit":
                self.counts[verb if verb in self.counts else "unknown"][1] += 1
                self.reply(self.denied)
                self.errors += 1
                continue
            if (settings.tls.level == "encrypt" and not self.tls_active and verb in self.counts
                    and verb not in PRE_TLS_COMMANDS):
                self.counts[verb][1] += 1
                self.reply("530 5.7.0 Must issue a STARTTLS command first")
                self.errors += 1
                continue
            handler = getattr(self, f"smtp_{verb.upper()}", None) if verb in self.counts else None
            if handler is None:
                self.counts["unknown"][1] += 1
                self.where = "UNKNOWN"
                if self._forbidden(words[0].text):
                    log.msg_warn(f"non-SMTP command from {self.namaddr}: {escape(raw)[:100]}")
                    self.reply("221 2.7.0 Error: I can break rules, too. Goodbye.")
                    break
                self.reply("500 5.5.2 Error: command not recognized")
                self.errors += 1
                continue
            self.where = verb.upper()
            count = self.counts[verb]
            count[1] += 1
            if self._pipelining_violation(verb):
                self.reply("554 5.5.0 Error: SMTP protocol synchronization")
                break
            if handler(words):
                count[0] += 1
            else:
                self.errors += 1
            if verb in JUNK_COMMANDS:
                if self.junk > settings.junk_command_limit:
                    self.errors += 1
                self.junk += 1
            if verb == "quit":
                break

    def _pipelining_violation(self, verb: str) -> bool:
        """Log input sent ahead where RFC 2920 does not allow it; True to hang up.

        Commands may be sent ahead only after EHLO, and never after HELO, EHLO,
        DATA, NOOP or VRFY. The first violation is logged (Postfix 3.7.10's
        "improper command pipelining"); with smtpd_forbid_unauth_pipelining =
        yes the session ends with 554.
        """
        if self.ill_pipelining or (self.protocol == "ESMTP" and verb not in LAST_COMMANDS):
            return False
        ahead = self.stream.peek(100)
        if not ahead:
            return False
        self.ill_pipelining = True
        log.msg_info(f"improper command pipelining after {self.where} from {self.namaddr}: {escape(ahead)}")
        return self.settings.forbid_unauth_pipelining

    def _forbidden(self, word: str) -> bool:
        """A header-like word (``Subject:``) or one in smtpd_forbidden_commands."""
        head, colon, _ = word.partition(":")
        if colon and head and set(head) <= HEADER_NAME:
            return True
        return self.settings.forbidden_commands.match(word)

    def _log_end(self) -> None:
        if self.reason:
            if self.where == "DATA content":
                size = self.reader.size if self.reader else 0
                log.msg_info(f"{self.reason} after DATA ({size} bytes) from {self.namaddr}")
            elif self.where != "END-OF-MESSAGE" or self.reason != "lost connection":
                log.msg_info(f"{self.reason} after {self.where} from {self.namaddr}")
        log.msg_info(f"disconnect from {self.namaddr}{command_stats(self.counts)}")

    def reply(self, text: str) -> None:
        """Queue a reply; sleep first once the client made smtpd_soft_error_limit errors."""
        if self.errors >= self.settings.soft_error_limit and self.settings.error_sleep_time:
            self.stream.flush()
            time.sleep(self.settings.error_sleep_time)
        if self.settings.soft_bounce:
            text = reply_soft_bounce(text)
        self.stream.reply(text)
        if text[:3] in ("421", "521"):
            self.hangup = True

    def reject(self, text: str) -> bool:
        """Log a policy reject as Postfix does (NOQUEUE: reject: ...) and send it; returns False."""
        if self.settings.soft_bounce:
            text = reply_soft_bounce(text)
        self.log_whatsup("reject", text)
        self.reply(text)
        return False

    def log_whatsup(self, kind: str, text: str) -> None:
        """Postfix's log_whatsup(): ``NOQUEUE: reject: RCPT from host[addr]: text; from=<> to=<> ...``."""
        log.msg_info(f"NOQUEUE: {kind}: {self.where} from {self.namaddr}: {text};"
                     f"{whatsup(self.sender, self.recipient, self.protocol, self.helo)}")

    def bare_lf_reply(self) -> str:
        """smtpd_forbid_bare_newline = reject's answer to a command or message with a bare LF."""
        code = self.settings.bare_newline_reject_code
        return f"{code} {str(code)[0]}.5.2 {self.settings.myhostname} Error: bare <LF> received"

    def check_state(self, recipient: str | None = None) -> CheckState:
        """What the restriction lists judge right now (with the transaction's DISCARD and HOLD marks)."""
        return CheckState(self.name, self.address, self.helo, self.sender, recipient, self.trusted,
                          self.ill_pipelining, self.reverse_name, discard=self.discard, hold=self.hold)

    def _judged(self, state: CheckState) -> None:
        """Keep what the restrictions marked; log what they asked to (Postfix's log_whatsup form)."""
        self.discard, self.hold = state.discard, state.hold
        for kind, text in state.events:
            self.log_whatsup(kind, text)
        state.events.clear()

    def check_early(self, stage: str) -> str | None:
        """With smtpd_delay_reject = no, run one early list (client, helo, sender) at its own command."""
        if self.restrictions is None or self.restrictions.settings.delay_reject:
            return None
        state = self.check_state()
        error = self.restrictions.check([stage], state)
        self._judged(state)
        return error

    def check_rcpt(self, recipient: str) -> str | None:
        """Every list RCPT runs, then the unknown-user check; the reject reply or None."""
        if recipient.lower() == "postmaster":
            return None  # RFC 5321 section 4.5.1: always accepted, whatever the restrictions say
        if self.restrictions is None:
            return self.policy.check_rcpt(recipient, self.trusted)
        state = self.check_state(recipient)
        error = self.restrictions.check(self.restrictions.rcpt_stages(), state)
        self._judged(state)
        if error is None and not state.discard and self.settings.reject_unlisted_recipient \
                and not state.unlisted_checked:
            error = self.policy.check_unlisted(recipient)
            if error is not None and error[:1] == "5" and state.defer_if_reject:
                error = state.defer_if_reject
        return error

    def mail_reset(self) -> None:
        """Forget the current transaction (RSET, HELO, EHLO, end of DATA)."""
        self.sender: str | None = None
        self.recipient: str | None = None
        self.recipients: list[str] = []
        self.discard = False  # DISCARD: accept, then drop the whole message
        self.hold = False  # HOLD: the message goes to hold/
        self.encoding = ""
        self.overshoot = 0
