"""The SMTP server state machine: the smtp_<VERB> commands of one session, with Postfix 3.7's replies.

The command loop, replies and session logging are in mta.smtpd.session;
extensions that are not offered are answered in mta.smtpd.unoffered.

TRANSACTION. MAIL opens a transaction (sender, SIZE and BODY parameters),
RCPT adds recipients that RecipientPolicy accepts, DATA reads the content
(dot-unstuffed, CRLF turned into LF, long lines kept whole) into memory and
hands it to cleanup with cleanup_submit(). ``250 2.0.0 Ok: queued as ID`` is
sent only after cleanup replied, i.e. after the queue file and its directory
were fsynced. A client that goes away before the final ``.`` leaves nothing
behind: nothing was sent to cleanup yet.

DIFFERENCES FROM POSTFIX (tests/mta/smtpd/golden holds transcripts recorded
from Postfix 3.7.11 that this server reproduces byte for byte). The queue ID
exists only after DATA (cleanup is contacted once, at the end), so ``ID:
client=...`` is logged then and rejects before it say NOQUEUE. Envelope
addresses must be UTF-8, because the inter-daemon protocol is JSON (with
smtputf8_enable = yes every command line must be, as in Postfix). DSN,
SMTPUTF8, CHUNKING, STARTTLS, AUTH, ETRN, XCLIENT and XFORWARD are not
offered; their commands and parameters get Postfix's replies for a server
without them (BDAT: 521 and hang up). After a MAIL refused for its SIZE, the
next MAIL is judged afresh (Postfix 3.7 keeps the old size and refuses it too).
"""

from __future__ import annotations

from typing import Sequence

from mta import log
from mta.smtpd.chat import printable, reply_multiline
from mta.smtpd.data import TOO_BIG, MessageReader, message_submit
from mta.smtpd.policy import queue_space_ok
from mta.smtpd.restrictions import HELO, SENDER
from mta.smtpd.token import SmtpToken, extract_addr
from mta.smtpd.unoffered import UnofferedCommands

NEUTER = str.maketrans({c: "?" for c in " <>()\\\";@"})


class SmtpSession(UnofferedCommands):
    """One SMTP session: run() it on an accepted connection (see SessionLoop for the arguments)."""

    # -- commands -----------------------------------------------------------

    def _hello(self, words: Sequence[SmtpToken], verb: str) -> bool:
        if len(words) < 2:
            self.reply(f"501 Syntax: {verb} hostname")
            return False
        self.mail_reset()
        self.helo = printable(" ".join(w.text for w in words[1:])).translate(NEUTER)
        return True

    def smtp_HELO(self, words: Sequence[SmtpToken]) -> bool:
        """HELO: greeting without extensions (RFC 5321 4.1.1.1); resets any transaction."""
        if not self._hello(words, "HELO"):
            return False
        if not self._helo_allowed():
            return False
        self.reply(f"250 {self.settings.myhostname}")
        return True

    def _helo_allowed(self) -> bool:
        """smtpd_delay_reject = no: run the HELO list now; a reject forgets the name."""
        error = self.check_early(HELO)
        if error is None:
            return True
        self.reject(error)
        self.helo = None
        return False

    def smtp_EHLO(self, words: Sequence[SmtpToken]) -> bool:
        """EHLO: greeting and the extensions this server implements."""
        if not self._hello(words, "EHLO"):
            return False
        if not self._helo_allowed():
            return False
        self.protocol = "ESMTP"
        limit = self.settings.message_size_limit
        lines = [self.settings.myhostname, "PIPELINING", f"SIZE {limit}" if limit else "SIZE"]
        if not self.settings.disable_vrfy:
            lines.append("VRFY")
        if self.settings.tls.offered and not self.tls_active:
            lines.append("STARTTLS")
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        self.reply(reply_multiline(250, lines))
        return True

    def smtp_MAIL(self, words: Sequence[SmtpToken]) -> bool:
        """MAIL FROM:<sender> [SIZE=n] [BODY=7BIT|8BITMIME]."""
        if self.settings.helo_required and self.helo is None:
            self.reply("503 5.5.1 Error: send HELO/EHLO first")
            return False
        if self.sender is not None:
            self.reply("503 5.5.1 Error: nested MAIL command")
            return False
        if len(words) < 3 or words[1].text.lower() != "from:":
            self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            return False
        sender = None if words[2].error else self._address(words[2].text, True)
        if sender is None:
            self.reply("501 5.1.7 Bad sender address syntax")
            return False
        size, encoding = 0, ""
        for word in words[3:]:
            name, _, value = word.text.partition("=")
            name = name.upper()
            if name == "BODY" and value.upper() in ("8BITMIME", "7BIT"):
                encoding = "8bit" if value.upper() == "8BITMIME" else "7bit"
            elif name == "SIZE":
                if not value.isascii() or not value.isdigit():
                    self.reply("501 5.5.4 Bad message size syntax")
                    return False
                size = int(value)
            else:
                self.reply(f"555 5.5.4 Unsupported option: {word.text}")
                return False
        limit = self.settings.message_size_limit
        self.sender = sender
        if limit and size > limit:
            self.reject("552 5.3.4 Message size exceeds fixed limit")
            self.sender = None
            return False
        if not queue_space_ok(self.queue_dir, self.settings.queue_minfree, limit):
            self.reject("452 4.3.1 Insufficient system storage")
            self.sender = None
            return False
        error = self.check_early(SENDER)
        if error is not None:
            self.reject(error)
            self.sender = None
            return False
        self.encoding = encoding
        self.reply("250 2.1.0 Ok")
        return True

    def _address(self, arg: str, allow_empty: bool) -> str | None:
        address = extract_addr(arg, allow_empty=allow_empty, strict=self.settings.strict_rfc821)
        if address is None:
            log.msg_warn(f"Illegal address syntax from {self.namaddr} in {self.where} command: "
                         f"{printable(arg)}")
        return address

    def smtp_RCPT(self, words: Sequence[SmtpToken]) -> bool:
        """RCPT TO:<recipient>: recipient limit, relay control, local recipient check."""
        if self.sender is None:
            self.reply("503 5.5.1 Error: need MAIL command")
            return False
        if len(words) < 3 or words[1].text.lower() != "to:":
            self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return False
        recipient = None if words[2].error else self._address(words[2].text, False)
        if recipient is None:
            self.reply("501 5.1.3 Bad recipient address syntax")
            return False
        if len(words) > 3:
            self.reply(f"555 5.5.4 Unsupported option: {words[3].text}")
            return False
        if len(self.recipients) >= self.settings.recipient_limit:
            self.reply("452 4.5.3 Error: too many recipients")
            self.overshoot += 1
            return self.overshoot <= self.settings.recipient_overshoot_limit
        saved, self.recipient = self.recipient, recipient
        error = self.check_rcpt(recipient)
        if error is not None:
            self.reject(error)
            self.recipient = saved
            return False
        self.recipient = saved or recipient
        self.recipients.append(recipient)
        self.reply("250 2.1.5 Ok")
        return True

    def smtp_DATA(self, words: Sequence[SmtpToken]) -> bool:
        """DATA: read the message, hand it to cleanup, answer with its queue ID."""
        if not self.recipients:
            if self.sender is None:
                self.reply("503 5.5.1 Error: need RCPT command")
            else:
                self.reply("554 5.5.1 Error: no valid recipients")
            return False
        if len(words) != 1:
            self.reply("501 5.5.4 Syntax: DATA")
            return False
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        self.where = "DATA content"
        self.reader = MessageReader(self.stream, self.settings.line_length_limit,
                                    self.settings.message_size_limit, strict_end=not self.bare_exempt)
        content = self.reader.read()
        self.where = "END-OF-MESSAGE"
        try:
            if content is None:
                log.msg_warn("NOQUEUE: queue file size limit exceeded")
                self.reply(TOO_BIG)
                return False
            if self.reader.bare_lf and self.settings.bare_newline == "reject" and not self.bare_exempt:
                self.reject(self.bare_lf_reply())
                return False
            return self._submit(content)
        finally:
            self.mail_reset()

    def smtp_STARTTLS(self, words: Sequence[SmtpToken]) -> bool:
        """STARTTLS (RFC 3207): handshake, then a fresh session; pipelined plain text is discarded."""
        tls = self.settings.tls
        if tls.context is None:
            return super().smtp_STARTTLS(words)
        if len(words) != 1:
            self.reply("501 5.5.4 Syntax: STARTTLS")
            return False
        if self.tls_active:
            self.reply("554 5.5.1 Error: TLS already active")
            return False
        self.reply("220 2.0.0 Ready to start TLS")
        self.stream.flush()
        dropped = self.stream.discard()
        if dropped:
            log.msg_warn(f"{self.namaddr}: discarding {dropped} bytes sent ahead of the TLS handshake")
        self.stream.tls_start(tls.context)
        sock = self.stream.sock
        version = sock.version() if hasattr(sock, "version") else None
        cipher = sock.cipher() if hasattr(sock, "cipher") else None
        self.tls_active = True
        self.tls_info = f"{version} with cipher {cipher[0]} ({cipher[2]}/{cipher[2]} bits)" if cipher else str(version)
        log.msg_info(f"Anonymous TLS connection established from {self.namaddr}: {self.tls_info}")
        self.helo = None
        self.protocol = "SMTP"
        self.mail_reset()
        return True

    def _submit(self, content: bytes) -> bool:
        protocol = self.protocol + ("S" if self.tls_active else "")
        attrs = {"client_name": self.name, "client_address": self.address, "client_port": self.port,
                 "protocol": protocol, "origin": "smtpd"}
        if self.tls_active and self.settings.tls.received_header:
            attrs["tls"] = self.tls_info
        if self.helo is not None:
            attrs["helo"] = self.helo
        if self.encoding:
            attrs["encoding"] = self.encoding
        flags = ["discard"] if self.discard else ["hold"] if self.hold else []
        queue_id, text = message_submit(self.submit, self.queue_dir, self.sender or "", self.recipients,
                                        content, attrs, flags)
        if queue_id is not None:
            log.msg_info(f"{queue_id}: client={self.namaddr}")
            self.errors = self.junk = 0
        self.reply(text)
        return queue_id is not None

    def smtp_RSET(self, words: Sequence[SmtpToken]) -> bool:
        """RSET: drop the transaction."""
        if len(words) != 1:
            self.reply("501 5.5.4 Syntax: RSET")
            return False
        self.mail_reset()
        self.reply("250 2.0.0 Ok")
        return True

    def smtp_NOOP(self, words: Sequence[SmtpToken]) -> bool:
        """NOOP; arguments are ignored (RFC 5321 4.1.1.9)."""
        self.reply("250 2.0.0 Ok")
        return True

    def smtp_VRFY(self, words: Sequence[SmtpToken]) -> bool:
        """VRFY: 502 when disable_vrfy_command = yes, else the RCPT checks and a non-committal 252."""
        if self.settings.disable_vrfy:
            self.reply("502 5.5.1 VRFY command is disabled")
            return False
        if len(words) < 2:
            self.reply("501 5.5.4 Syntax: VRFY address")
            return False
        arg = " ".join(w.text for w in words[1:])
        recipient = self._address(arg, False)
        if recipient is None:
            self.reply("501 5.1.3 Bad recipient address syntax")
            return False
        saved, self.recipient = self.recipient, recipient
        error = self.check_rcpt(recipient)
        if error is not None:
            self.reject(error)
        self.recipient = saved
        if error is not None:
            return False
        self.reply(f"252 2.0.0 {arg}")
        return True

    def smtp_QUIT(self, words: Sequence[SmtpToken]) -> bool:
        """QUIT (arguments are ignored, as in Postfix)."""
        self.reply("221 2.0.0 Bye")
        return True

