"""Expected SMTP replies, as named constants (Postfix 3.7.11's texts for this test configuration)."""

from __future__ import annotations

from tests.mta.smtpd.conftest import HOSTNAME

S220_BANNER = f"220 {HOSTNAME} ESMTP Postfix"
S250_OK = "250 2.0.0 Ok"
S250_MAIL = "250 2.1.0 Ok"
S250_RCPT = "250 2.1.5 Ok"
S354 = "354 End data with <CR><LF>.<CR><LF>"
S221_BYE = "221 2.0.0 Bye"
S221_FORBIDDEN = "221 2.7.0 Error: I can break rules, too. Goodbye."
S421_TIMEOUT = f"421 4.4.2 {HOSTNAME} Error: timeout exceeded"
S421_ERRORS = f"421 4.7.0 {HOSTNAME} Error: too many errors"
S452_TOO_MANY = "452 4.5.3 Error: too many recipients"
S500_UNKNOWN = "500 5.5.2 Error: command not recognized"
S500_UTF8 = "500 5.5.2 Error: bad UTF-8 syntax"
S501_MAIL_SYNTAX = "501 5.5.4 Syntax: MAIL FROM:<address>"
S501_RCPT_SYNTAX = "501 5.5.4 Syntax: RCPT TO:<address>"
S501_BAD_SENDER = "501 5.1.7 Bad sender address syntax"
S501_BAD_RCPT = "501 5.1.3 Bad recipient address syntax"
S501_BAD_SIZE = "501 5.5.4 Bad message size syntax"
S501_RSET_SYNTAX = "501 5.5.4 Syntax: RSET"
S501_EHLO_SYNTAX = "501 Syntax: EHLO hostname"
S502_VRFY = "502 5.5.1 VRFY command is disabled"
S503_NESTED = "503 5.5.1 Error: nested MAIL command"
S503_NEED_MAIL = "503 5.5.1 Error: need MAIL command"
S503_NEED_RCPT = "503 5.5.1 Error: need RCPT command"
S503_HELO_FIRST = "503 5.5.1 Error: send HELO/EHLO first"
S552_SIZE = "552 5.3.4 Message size exceeds fixed limit"
S552_TOO_BIG = "552 5.3.4 Error: message file too big"
S554_NO_RCPT = "554 5.5.1 Error: no valid recipients"
S555_OPTION = "555 5.5.4 Unsupported option: RET=FULL"
S550_XCLIENT = "550 5.7.0 Error: insufficient authorization"
S554_SYNC = "554 5.5.0 Error: SMTP protocol synchronization"
S451_WRITE = "451 4.3.0 Error: queue file write error"
EHLO_FEATURES = [HOSTNAME, "PIPELINING", "SIZE 10240000", "VRFY", "ENHANCEDSTATUSCODES", "8BITMIME"]


def relay_denied(address: str) -> str:
    """The reply for a recipient outside mydestination and relay_domains, from outside mynetworks."""
    return f"454 4.7.1 <{address}>: Relay access denied"


def user_unknown(address: str) -> str:
    """The reply for an address in mydestination that local_recipient_maps does not know."""
    return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table"
