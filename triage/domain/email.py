"""Raw RFC 822 bytes to a ParsedEmail: text, safe html->text, headers, thread keys, parts."""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesParser

from triage.domain.email_headers import HeaderReader
from triage.domain.email_thread import (
    capped_references,
    first_message_id,
    message_ids,
    thread_key,
)
from triage.domain.html_text import strip_invisible
from triage.domain.mime_parts import MimeWalk, ParsedAttachment

__all__ = ["EmailParseError", "ParsedAttachment", "ParsedEmail", "parse_email"]

# The headers screening rules look at; everything else stays in the raw message.
SCREENING_HEADERS = (
    "auto-submitted",
    "precedence",
    "list-unsubscribe",
    "list-id",
    "x-auto-response-suppress",
    "return-path",
    "reply-to",
    "content-type",
    "x-mailer",
    "x-autoreply",
    "x-autorespond",
    "x-failed-recipients",
)
MAX_DEFECTS = 50
# Obsolete RFC 822 syntax allowed space before the colon ("Subject   : hi"); Python's
# parser then sees no headers at all, so such a header block is rewritten once.
_OBSOLETE_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]+:", re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CHARSET_PARAM = re.compile(r"charset\s*=\s*\"?([\w.:+-]+)", re.IGNORECASE)
_PGP_MESSAGE = "-----BEGIN PGP MESSAGE-----"
# The parser only splits the MIME structure: headers are read from raw_items() and decoded
# with policy.default's header parsers where needed (email_headers, mime_info). With
# policy.default the feed parser itself runs the full header parser on every Content-Type
# it looks at, which made it 4-5x slower on real mail, and it loses boundaries that
# compat32 finds (an unquoted "=" in a boundary, say).
_STRUCTURE_POLICY = policy.compat32


class EmailParseError(Exception):
    """The bytes are not mail at all; the caller keeps them raw with this reason."""


@dataclass(frozen=True)
class ParsedEmail:
    """Everything later stages need from one message; `defects` says what had to be guessed."""

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    thread_key: str
    subject: str
    from_addr: str
    to_addrs: tuple[str, ...]
    cc_addrs: tuple[str, ...]
    date: datetime | None
    text: str
    html: str | None
    headers: dict[str, str]
    attachments: tuple[ParsedAttachment, ...]
    defects: tuple[str, ...]
    encrypted: bool = False


def parse_email(raw: bytes) -> ParsedEmail:
    """Parses one message; degrades and records defects rather than raising.

    Raises EmailParseError only when the input is empty or binary without any header.
    """
    msg, defects = _load(raw)
    walk = MimeWalk(defects=defects)
    walk.walk(msg)
    walk.finish()
    headers = HeaderReader(msg, walk.defects, charset_hint=_charset_hint(msg))
    subject = headers.text("subject") or ""
    from_addr = next(iter(headers.addresses("from")), "")
    message_id = first_message_id(headers.raw("message-id"))
    in_reply_to = next(iter(message_ids(headers.raw("in-reply-to"))), None)
    references = capped_references(message_ids(" ".join(headers.raw_all("references"))))
    key = thread_key(
        references=references,
        in_reply_to=in_reply_to,
        message_id=message_id,
        subject=subject,
        from_addr=from_addr,
    )
    to_addrs, cc_addrs = headers.addresses("to"), headers.addresses("cc")
    date, screening = headers.date(), _screening_headers(headers)
    text = _join_text(walk.texts)
    return ParsedEmail(
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        thread_key=key,
        subject=subject,
        from_addr=from_addr,
        to_addrs=to_addrs,
        cc_addrs=cc_addrs,
        date=date,
        text=text,
        html=walk.html,
        headers=screening,
        attachments=tuple(walk.attachments),
        defects=_unique(walk.defects),  # last: the header reads above add defects too
        # Inline PGP: the body *is* the armoured block (a quoted one in a reply is not).
        encrypted=walk.encrypted or text.lstrip().startswith(_PGP_MESSAGE),
    )


def _load(raw: bytes) -> tuple[Message, list[str]]:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise EmailParseError(f"expected bytes, got {type(raw).__name__}")
    data = bytes(raw).lstrip()  # IMAP servers and mbox tools sometimes prepend blank lines
    if not data:
        raise EmailParseError("empty input")
    defects: list[str] = []
    msg: Message
    try:
        msg = email.message_from_bytes(data, policy=_STRUCTURE_POLICY)
    except RecursionError:
        # The stdlib parser recurses once per multipart level; keep the headers at least.
        msg = BytesParser(policy=_STRUCTURE_POLICY).parsebytes(data, headersonly=True)
        defects.append("MIME nesting too deep to parse, body kept as text")
    if not msg.keys():
        msg = _without_headers(data, msg, defects)
    return msg, defects


def _without_headers(data: bytes, msg: Message, defects: list[str]) -> Message:
    """A message with no parseable header: repair obsolete syntax, refuse binary blobs."""
    if b"\x00" in data[:8192]:
        raise EmailParseError("no header section and the content is binary")
    match = _HEADER_END.search(data)
    head_end = match.start() if match else len(data)
    repaired_head = _OBSOLETE_FIELD.sub(rb"\1:", data[:head_end])
    if repaired_head != data[:head_end]:
        repaired = email.message_from_bytes(
            repaired_head + data[head_end:], policy=_STRUCTURE_POLICY
        )
        if repaired.keys():
            defects.append("obsolete header syntax (space before colon) repaired")
            return repaired
    defects.append("no header section")
    return msg


def _charset_hint(msg: Message) -> str | None:
    """The top-level charset, used to read raw 8-bit header bytes that are not UTF-8."""
    for key, value in msg.raw_items():
        if key.lower() == "content-type" and isinstance(value, str):
            match = _CHARSET_PARAM.search(value[:2000])
            return match.group(1) if match else None
    return None


def _screening_headers(headers: HeaderReader) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in SCREENING_HEADERS:
        value = headers.text(name)
        if value is not None:
            found[name] = value
    return found


def _join_text(chunks: list[str]) -> str:
    cleaned = (c.replace("\r\n", "\n").replace("\r", "\n").strip("\n") for c in chunks)
    return strip_invisible("\n\n".join(c for c in cleaned if c.strip()))


def _unique(defects: list[str]) -> tuple[str, ...]:
    unique = list(dict.fromkeys(defects))
    if len(unique) > MAX_DEFECTS:
        unique = [*unique[: MAX_DEFECTS - 1], f"{len(unique) - MAX_DEFECTS + 1} more defects"]
    return tuple(unique)
