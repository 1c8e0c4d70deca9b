"""DATA content: read it up to the final dot, unstuff dots, enforce the size limit; cleanup's replies.

CONTENT (RFC 5321 section 4.5.2 and Postfix's receive_data_message()). Lines
end in LF in the result, whether the client sent CRLF or a bare LF. A line
longer than line_length_limit is read in pieces and stored whole; only its first
piece can be the end marker or be dot-unstuffed. Leading ``From `` lines (a
Unix mailbox separator, optionally ``>``-quoted) become ``X-Mailbox-Line:``
headers, and content that starts with white space gets an empty line first,
so that it cannot continue the Received: header cleanup puts above it.

HAND-OFF. message_submit() gives the message to cleanup and turns its answer
into the reply: ``250 2.0.0 Ok: queued as ID`` only once cleanup has the
file safely in incoming/; cleanup's own refusal otherwise; ``451 4.3.0 Error:
queue file write error`` when cleanup cannot be reached.

END OF DATA AND SMUGGLING (smtpd_forbid_bare_newline, CVE-2023-51764). With
``normalize`` (this MTA's default, Postfix 3.9's) and ``reject`` the message
ends only at CRLF.CRLF: a dot line ended by a bare LF, or one after a line
that ended in a bare LF, is content, so ``\n.\n`` inside a message can never
end it and let the rest be read as a second message. ``normalize`` keeps such
lines (a bare LF counts as CRLF); ``reject`` reads on to the real end and
refuses the message (``550 5.5.2 HOST Error: bare <LF> received``). Clients in
smtpd_forbid_bare_newline_exclusions ($mynetworks) keep the old rule, where
any LF.LF ends the data, as in Postfix.

SIZE. Each line costs its length plus 2 (its CRLF), as in Postfix; once
message_size_limit is passed the rest is read and thrown away, and the
caller answers ``552 5.3.4 Error: message file too big``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from mta import log, proto
from mta.clients import ServiceError
from mta.smtpd.chat import SmtpStream

TOO_BIG = "552 5.3.4 Error: message file too big"
WRITE_ERROR = "451 4.3.0 Error: queue file write error"


class MessageReader:
    """Reads one message's content from a session's stream.

    + stream: the session's stream, just after the 354 reply.
    + line_limit: line_length_limit, the largest piece read at once.
    + size_limit: message_size_limit (0: no limit).
    + size: bytes stored so far, counted as Postfix does (2 per line end); the
      session logs it when the client goes away in the middle.
    """

    def __init__(self, stream: SmtpStream, line_limit: int, size_limit: int, strict_end: bool = True) -> None:
        self.stream = stream
        self.line_limit = line_limit
        self.size_limit = size_limit
        self.strict_end = strict_end
        self.size = 0
        self.bare_lf = False  # a line of this message ended in a bare LF

    def read(self) -> bytes | None:
        """The content up to the final dot; None when it exceeds the size limit."""
        read_line, line_limit, stream = self.stream.read_line, self.line_limit, self.stream
        parts: list[bytes] = []
        first, at_start, too_big = True, True, False
        proper = True  # the previous line ended in CRLF (the DATA command's line counts as one)
        while True:
            line, complete = read_line(line_limit)
            bare = complete and stream.bare_lf
            self.bare_lf = self.bare_lf or bare
            if first:
                if line.lstrip(b">").startswith(b"From "):
                    header = [b"X-Mailbox-Line: ", line]
                    while not complete:
                        line, complete = read_line(line_limit)
                        header.append(line)
                    parts.append(b"".join(header) + b"\n")
                    continue
                first = False
                if line[:1] in (b" ", b"\t"):
                    parts.append(b"\n")
            if at_start and line[:1] == b".":
                line = line[1:]
                if not line and complete and (not self.strict_end or (proper and not bare)):
                    break
            at_start = complete
            if complete:
                proper = not bare
            if too_big:
                continue
            cost = len(line) + 2
            if self.size_limit and self.size + cost > self.size_limit:
                too_big = True
                continue
            self.size += cost
            parts.append(line + b"\n" if complete else line)
        return None if too_big else b"".join(parts)


def cleanup_reply(exc: ServiceError) -> str:
    """The SMTP reply for a cleanup refusal: its own SMTP text, or code + DSN + ``Error: reason``.

    >>> cleanup_reply(ServiceError("cleanup", 5, "5.3.4", "message file too big"))
    '552 5.3.4 Error: message file too big'
    >>> cleanup_reply(ServiceError("cleanup", 4, "4.3.0", "queue file write error"))
    '451 4.3.0 Error: queue file write error'
    """
    reason = exc.reason
    if len(reason) >= 4 and reason[0] in "45" and reason[1:3].isdigit() and reason[3] in " -":
        return reason
    if exc.status == proto.PERMFAIL:
        code = {"5.3.4": 552, "5.4.0": 554}.get(exc.dsn, 550)
    else:
        code = 451
    dsn = exc.dsn if exc.dsn[:1] == str(code)[0] else f"{str(code)[0]}.3.0"
    return f"{code} {dsn} Error: {reason}"


def message_submit(submit: Callable[..., str], queue_dir: Path, sender: str, recipients: Sequence[str],
                   content: bytes, attrs: dict[str, str], flags: Sequence[str] = ()) -> tuple[str | None, str]:
    """Hand a message to cleanup; return (queue ID or None, the SMTP reply to send).

    + submit: mta.clients.cleanup_submit (or a test double with its signature).
    + queue_dir, sender, recipients, content, attrs, flags: as cleanup_submit takes them.
    """
    try:
        queue_id = submit(queue_dir, sender, [{"address": r} for r in recipients], content, attrs, flags=flags)
    except ServiceError as exc:
        return None, cleanup_reply(exc)
    except (OSError, proto.ProtocolError) as exc:
        log.msg_warn(f"cleanup: {queue_dir / 'public' / 'cleanup'}: {exc}")
        return None, WRITE_ERROR
    return queue_id, f"250 2.0.0 Ok: queued as {queue_id}"
