"""Turn one fetched message into rows: parse, pick images, and store it under its unique key."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.adapters.db.bulk_insert import insert_messages
from triage.adapters.db.tables import Attachment, Message
from triage.config import Settings
from triage.domain.email import ParsedEmail, parse_email
from triage.domain.images import NormalizedImage
from triage.pipeline.mail_reader import ImageLimits, ReadMail, read_mail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewMessage:
    account_id: int
    folder: str
    uidvalidity: int
    uid: int
    size: int
    raw: bytes | None = field(repr=False)  # None when too large to fetch
    head: bytes | None = field(default=None, repr=False)  # the header block of a too-large one
    read: ReadMail | None = field(default=None, repr=False)  # raw, read already (in a batch)


@dataclass(frozen=True)
class StoreOutcome:
    status: str  # received | too_large | failed | encrypted | duplicate
    message_id: int | None


def store_messages(
    session: Session, items: Sequence[NewMessage], *, settings: Settings
) -> list[StoreOutcome]:
    """Insert a batch at once (COPY on Postgres); when a row is already there (another fetcher
    got in between), each message again in a savepoint of its own."""
    rows = [_build_row(item, settings) for item in items]
    try:
        with session.begin_nested():
            insert_messages(session, rows)
    except IntegrityError:
        return [store_message(session, item, settings=settings) for item in items]
    return [StoreOutcome(status=row.status, message_id=row.id) for row in rows]


def store_message(session: Session, item: NewMessage, *, settings: Settings) -> StoreOutcome:
    """Insert the message in a savepoint; a row already there (another fetcher) is a duplicate."""
    message = _build_row(item, settings)
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:
        return StoreOutcome(status="duplicate", message_id=None)
    return StoreOutcome(status=message.status, message_id=message.id)


def _build_row(item: NewMessage, settings: Settings) -> Message:
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
        if item.head is not None:
            _describe_unfetched(row, item.head)
        return row
    row.raw = item.raw
    row.raw_sha256 = hashlib.sha256(item.raw).hexdigest()
    read = item.read if item.read is not None else read_mail(item.raw, image_limits(settings))
    if read.parsed is None:
        if not (read.failure or "").startswith("unparseable"):
            log.error("account %s uid %s: %s", item.account_id, item.uid, read.failure)
        row.status, row.error = "failed", read.failure
        return row
    _fill_from_read(row, read.parsed, read)
    return row


def image_limits(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_side=settings.image_max_side,
        min_side=settings.image_min_side,
        cap=settings.images_per_message,
    )


def _describe_unfetched(row: Message, head: bytes) -> None:
    """A too-large message still says who sent what, and when, from its header block."""
    try:
        parsed = parse_email(head)
    except Exception:  # a header block not even the parser can read: the row stays bare
        log.warning("account %s uid %s: its headers could not be read", row.account_id, row.uid)
        return
    row.subject, row.from_addr, row.sent_at = parsed.subject, parsed.from_addr, parsed.date
    row.to_addrs = list(parsed.to_addrs)
    row.message_id_header = _clip(parsed.message_id, 998)


def _fill_from_read(row: Message, parsed: ParsedEmail, read: ReadMail) -> None:
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
    normalized = {image.sha256: image for image in read.kept}
    reasons = {image.sha256: image.reason for image in read.skipped}
    for part in parsed.attachments:
        attachment = Attachment(
            filename=part.filename,
            declared_type=part.declared_type,
            sniffed_type=part.sniffed_type,
            size=part.size,
            sha256=part.sha256,
            content_id=part.content_id,
            inline=part.inline,
        )
        _apply_image(attachment, normalized.pop(part.sha256, None), reasons.get(part.sha256))
        row.attachments.append(attachment)


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
