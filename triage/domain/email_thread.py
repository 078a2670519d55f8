"""Message-ID parsing and the thread key that groups a message with its conversation."""

from __future__ import annotations

import hashlib
import re
from email.utils import parseaddr

# References headers on long threads grow without bound; the root and the newest are what
# threading needs, so the middle is dropped past this many.
MAX_REFERENCES = 50
_MAX_ID_CHARS = 250
_BRACKETED = re.compile(r"<([^<>]*)>")
_WS = re.compile(r"\s+")
# Reply/forward markers in the languages our users write in, plus "[list-name]" tags.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|fw|aw|sv|wg|vs|tr|rif|antw|odp|ref|r)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a]"
    r"|\[[^\]]{0,64}\])\s*",
    re.IGNORECASE,
)


def message_ids(raw: str | None) -> list[str]:
    """Every "<id>" in a header value, normalized; bare "id@host" tokens are bracketed."""
    if not raw:
        return []
    found = [_WS.sub("", inner) for inner in _BRACKETED.findall(raw)]
    if not found:
        found = [tok.strip("<>,;") for tok in raw.split() if "@" in tok]
    return [f"<{ident[:_MAX_ID_CHARS]}>" for ident in found if ident]


def first_message_id(raw: str | None) -> str | None:
    ids = message_ids(raw)
    if ids:
        return ids[0]
    token = raw.split()[0].strip("<>") if raw and raw.split() else ""
    return f"<{token[:_MAX_ID_CHARS]}>" if token else None


def capped_references(ids: list[str]) -> tuple[str, ...]:
    if len(ids) <= MAX_REFERENCES:
        return tuple(ids)
    return (ids[0], *ids[-(MAX_REFERENCES - 1) :])


def normalize_subject(subject: str) -> str:
    """The subject without Re:/Fwd:/AW:/SV:... prefixes or list tags, casefolded."""
    previous = None
    while previous != subject:
        previous = subject
        subject = _PREFIX.sub("", subject, count=1)
    return _WS.sub(" ", subject).strip().casefold()


def thread_key(
    *,
    references: tuple[str, ...],
    in_reply_to: str | None,
    message_id: str | None,
    subject: str,
    from_addr: str,
) -> str:
    """The thread root's Message-ID when known, else a stable hash of subject and sender."""
    if references:
        return references[0]
    if in_reply_to:
        return in_reply_to
    if message_id:
        return message_id
    sender = (parseaddr(from_addr)[1] or from_addr).strip().lower()
    digest = hashlib.sha256(f"{normalize_subject(subject)}\x00{sender}".encode()).hexdigest()
    return f"subject:{digest[:32]}"
