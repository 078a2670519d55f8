"""A stored draft as an RFC 5322 reply, to be APPENDed to the user's Drafts folder. Never sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses

from triage.domain.email_thread import capped_references

_REPLY_PREFIX = re.compile(r"^\s*re\s*:", re.IGNORECASE)
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Original:
    """What a reply needs of the message it answers (as stored on its row)."""

    subject: str
    reply_to: str  # the Reply-To header, else From
    message_id: str | None
    references: tuple[str, ...]


def reply_subject(subject: str) -> str:
    flat = _one_line(subject)
    return flat if _REPLY_PREFIX.match(flat) else f"Re: {flat}".rstrip()


def reply_draft(
    original: Original, *, body: str, from_addr: str, draft_message_id: str, date: datetime
) -> bytes:
    """The reply as CRLF bytes, threaded under the original with In-Reply-To and References."""
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = _address(from_addr) or from_addr
    recipients = _address(original.reply_to)
    if recipients:
        mail["To"] = recipients
    mail["Subject"] = reply_subject(original.subject)
    mail["Date"] = format_datetime(date)
    mail["Message-ID"] = draft_message_id
    if original.message_id:
        mail["In-Reply-To"] = original.message_id
        chain = [ref for ref in original.references if ref != original.message_id]
        mail["References"] = " ".join(capped_references([*chain, original.message_id]))
    mail.set_content(body if body.endswith("\n") else body + "\n")
    return mail.as_bytes()


def _address(value: str) -> str:
    """Addresses re-rendered from their parsed parts, so no header text can smuggle a line."""
    try:
        pairs = getaddresses([_one_line(value)])
    except (HeaderParseError, ValueError, IndexError):
        return ""
    rendered = [formataddr((_one_line(name), addr)) for name, addr in pairs if "@" in addr]
    return ", ".join(rendered)


def _one_line(text: str) -> str:
    return _WS.sub(" ", text).strip()
