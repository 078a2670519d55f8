"""Images a sender has sent before (logos, signature banners) are not news: not for the model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import Attachment, Message
from triage.pipeline.mail_reader import ImageLimits, ReadMail, read_mail

RECENT = timedelta(days=90)


def skip_repeated_images(
    session: Session,
    account_id: int,
    raws: Sequence[bytes],
    reads: Sequence[ReadMail],
    limits: ImageLimits,
) -> list[ReadMail]:
    """Reads of a batch (in mailbox order) where an image kept for the model had come from the
    same sender recently, in stored mail or earlier in the batch, read again without it (a
    rare case, so it is simply read once more, letting the next image take its place)."""
    seen = _stored_pairs(session, account_id, reads)
    out = []
    for raw, read in zip(raws, reads, strict=True):
        sender = read.parsed.from_addr if read.parsed is not None else ""
        repeated = frozenset(h for h in read.image_hashes if (h, sender) in seen)
        if any(image.sha256 in repeated for image in read.kept):
            read = read_mail(raw, limits, recent_hashes=repeated)
        seen.update((h, sender) for h in read.image_hashes)
        out.append(read)
    return out


def _stored_pairs(
    session: Session, account_id: int, reads: Sequence[ReadMail]
) -> set[tuple[str, str]]:
    """(image hash, sender) of this account's recent mail, for the batch's images only."""
    hashes = {h for read in reads for h in read.image_hashes}
    if not hashes:
        return set()
    query = (
        select(Attachment.sha256, Message.from_addr)
        .join(Message, Attachment.message_id == Message.id)
        .where(
            Attachment.sha256.in_(hashes),
            Message.account_id == account_id,
            Message.created_at >= datetime.now(UTC) - RECENT,
        )
        .distinct()
    )
    return {(digest, sender) for digest, sender in session.execute(query)}
