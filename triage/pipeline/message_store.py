"""Turn one fetched message into rows: parse, pick images, and store it under its unique key."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.adapters.db.tables import Attachment, Message
from triage.config import Settings
from triage.domain.email import EmailParseError, ParsedEmail, parse_email
from triage.domain.images import ImageCandidate, NormalizedImage, select_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewMessage:
    account_id: int
    folder: str
    uidvalidity: int
    uid: int
    size: int
    raw: bytes | None = field(repr=False)  # None when too large to fetch


@dataclass(frozen=True)
class StoreOutcome:
    status: str  # received | too_large | failed | encrypted | duplicate
    message_id: int | None


def store_message(session: Session, item: NewMessage, *, settings: Settings) -> StoreOutcome:
    """Insert the message in a savepoint; a row already there (another fetcher) is a duplicate."""
    message = _build_row(session, item, settings)
    if message is None:
        return StoreOutcome(status="duplicate", message_id=None)
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:
        return StoreOutcome(status="duplicate", message_id=None)
    return StoreOutcome(status=message.status, message_id=message.id)


def _build_row(session: Session, item: NewMessage, settings: Settings) -> Message | None:
    row = Message(
        account_id=item.account_id,
        folder=item.folder,
        uidvalidity=item.uidvalidity,
        uid=item.uid,
        size=item.size,
    )
    if item.raw is None:
        row.status = "too_large"
        row.error = (
            f"{item.size} bytes is over the cap of {settings.max_message_bytes}; not fetched"
        )
        return row
    row.raw = item.raw
    row.raw_sha256 = hashlib.sha256(item.raw).hexdigest()
    if _seen_under_other_uidvalidity(session, item, row.raw_sha256):
        return None
    try:
        parsed = parse_email(item.raw)
    except EmailParseError as exc:
        row.status, row.error = "failed", f"unparseable: {exc}"
        return row
    except Exception as exc:  # the parser must never lose a message, whatever it hits
        log.exception("parser crashed on account %s uid %s", item.account_id, item.uid)
        row.status, row.error = "failed", f"parser error: {type(exc).__name__}: {exc}"[:500]
        return row
    _fill_from_parsed(row, parsed, settings)
    return row


def _seen_under_other_uidvalidity(session: Session, item: NewMessage, digest: str) -> bool:
    """After a UIDVALIDITY change, the same bytes in the same folder are mail we already have."""
    query = select(
        exists().where(
            Message.account_id == item.account_id,
            Message.raw_sha256 == digest,
            Message.folder == item.folder,
            Message.uidvalidity != item.uidvalidity,
        )
    )
    return bool(session.scalar(query))


def _fill_from_parsed(row: Message, parsed: ParsedEmail, settings: Settings) -> None:
    row.message_id_header = _clip(parsed.message_id, 998)
    row.in_reply_to = _clip(parsed.in_reply_to, 998)
    row.references = list(parsed.references[:50])
    row.thread_key = _clip(parsed.thread_key, 998)
    row.from_addr = parsed.from_addr
    row.to_addrs = list(parsed.to_addrs)
    row.cc_addrs = list(parsed.cc_addrs)
    row.subject = parsed.subject
    row.sent_at = parsed.date
    row.text_body = parsed.text
    row.html_body = parsed.html
    row.headers = dict(parsed.headers)
    row.defects = list(parsed.defects)
    row.status = "received"
    if parsed.encrypted:
        row.status, row.error = "encrypted", "the message is encrypted; nothing to triage"
    row.attachments = _attachments(parsed, settings)


def _attachments(parsed: ParsedEmail, settings: Settings) -> list[Attachment]:
    candidates = [
        ImageCandidate(
            data=part.data,
            sha256=part.sha256,
            declared_type=part.declared_type,
            content_id=part.content_id,
            inline=part.inline,
            filename=part.filename,
        )
        for part in parsed.attachments
        if part.sniffed_type and part.sniffed_type.startswith("image/")
    ]
    kept, skipped = select_images(
        candidates,
        max_side=settings.image_max_side,
        min_side=settings.image_min_side,
        cap=settings.images_per_message,
    )
    normalized = {image.sha256: image for image in kept}
    reasons = {image.sha256: image.reason for image in skipped}
    rows = []
    for part in parsed.attachments:
        row = Attachment(
            filename=part.filename,
            declared_type=part.declared_type,
            sniffed_type=part.sniffed_type,
            size=part.size,
            sha256=part.sha256,
            content_id=part.content_id,
            inline=part.inline,
        )
        _apply_image(row, normalized.pop(part.sha256, None), reasons.get(part.sha256))
        rows.append(row)
    return rows


def _apply_image(row: Attachment, image: NormalizedImage | None, reason: str | None) -> None:
    if image is not None:
        row.for_model = True
        row.normalized = image.data
        row.normalized_type = image.media_type
        row.width, row.height = image.width, image.height
    elif reason is not None:
        row.skip_reason = reason


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else value
