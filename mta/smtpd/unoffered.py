"""Commands of extensions this server does not offer, answered as Postfix answers them without the feature.

STARTTLS (no TLS), AUTH (smtpd_sasl_auth_enable = no), ETRN (no fast-flush
service: Postfix's answer for a domain it cannot flush), BDAT (CHUNKING not
announced: the chunk that follows is not a command, so the session ends),
XCLIENT and XFORWARD (no authorized hosts).
"""

from __future__ import annotations

from typing import Sequence

from mta import log
from mta.smtpd.session import SessionLoop
from mta.smtpd.token import SmtpToken, valid_address_literal, valid_hostname


class UnofferedCommands(SessionLoop):
    """smtp_<VERB> handlers for the extensions above; each returns False (an error, as in Postfix)."""

    def smtp_ETRN(self, words: Sequence[SmtpToken]) -> bool:
        """ETRN: there is no fast-flush service, so every valid domain gets Postfix's 459."""
        if self.sender is not None:
            self.reply("503 Error: MAIL transaction in progress")
            return False
        if len(words) != 2:
            self.reply("500 Syntax: ETRN domain")
            return False
        domain = words[1].text.lstrip("@#")
        if not (valid_hostname(domain) or valid_address_literal(domain)):
            self.reply("501 Error: invalid parameter syntax")
            return False
        log.msg_warn(f"reject: ETRN {words[1].text[:100]}... from {self.namaddr}")
        self.reply(f"459 <{words[1].text}>: service unavailable")
        return False

    def smtp_STARTTLS(self, words: Sequence[SmtpToken]) -> bool:
        """STARTTLS: not offered (Postfix built without TLS)."""
        self.reply("502 5.5.1 Error: command not implemented")
        return False

    def smtp_AUTH(self, words: Sequence[SmtpToken]) -> bool:
        """AUTH: not offered (smtpd_sasl_auth_enable = no)."""
        self.reply("503 5.5.1 Error: authentication not enabled")
        return False

    def smtp_BDAT(self, words: Sequence[SmtpToken]) -> bool:
        """BDAT: CHUNKING is not offered; hang up, as the chunk that follows is not a command."""
        self.reply("521 5.5.1 Error: command not implemented")
        return False

    def smtp_XCLIENT(self, words: Sequence[SmtpToken]) -> bool:
        """XCLIENT (and XFORWARD): no client is authorized (smtpd_authorized_xclient_hosts is empty)."""
        if self.sender is not None:
            self.reply("503 5.5.1 Error: MAIL transaction in progress")
        else:
            self.reply("550 5.7.0 Error: insufficient authorization")
        return False

    smtp_XFORWARD = smtp_XCLIENT
