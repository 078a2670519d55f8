"""Storing fetched mail: bodies in memory-bounded chunks, each stored with the folder's mark."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import FolderState, Message
from triage.config import Settings
from triage.domain.email import parse_email
from triage.pipeline.message_store import NewMessage, store_message
from triage.pipeline.ports import Enqueuer
from triage.pipeline.sync_lease import Lease

log = logging.getLogger(__name__)


class Fetcher(Protocol):
    def sizes(self, uids: Sequence[int]) -> dict[int, int]: ...

    def bodies(self, uids: Sequence[int]) -> dict[int, bytes]: ...

    def headers(self, uids: Sequence[int]) -> dict[int, bytes]: ...


@dataclass
class Counts:
    stored: int = 0
    duplicates: int = 0  # already stored under this UIDVALIDITY (another fetcher got there first)
    recognised: int = 0  # stored before a UIDVALIDITY change: same bytes, given the new UID
    too_large: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Where:
    """The folder being read, as the database knows it."""

    account_id: int
    folder: str
    uidvalidity: int


def ingest_uids(
    *,
    fetcher: Fetcher,
    where: Where,
    uids: Sequence[int],
    db: SessionFactory,
    enqueue: Enqueuer,
    settings: Settings,
    counts: Counts,
    lease: Lease | None = None,
) -> None:
    """Sizes first; then bodies under the byte budget, each chunk stored and its mark advanced
    in one transaction, then enqueued. Over the size cap: a `too_large` row, never downloaded."""
    if not uids:
        return
    sizes = fetcher.sizes(uids)
    for chunk in size_chunks(uids, sizes, settings):
        if lease is not None:
            lease.renew()
        small = [uid for uid in chunk if uid in sizes and sizes[uid] <= settings.max_message_bytes]
        large = [uid for uid in chunk if uid in sizes and uid not in small]
        bodies = fetcher.bodies(small)
        bodies.update(fetcher.headers(large))  # no body: only who sent what, and when
        new_ids = _store_chunk(where, chunk, sizes, bodies, db, settings, counts)
        for message_id in new_ids:
            enqueue.triage(message_id)
        _mark_queued(db, new_ids)


def size_chunks(
    uids: Sequence[int], sizes: dict[int, int], settings: Settings
) -> Iterator[Sequence[int]]:
    """Runs of UIDs whose bodies fit in fetch_batch_bytes together (a big one goes alone)."""
    start, held = 0, 0
    for index, uid in enumerate(uids):
        size = sizes.get(uid, 0)
        size = size if size <= settings.max_message_bytes else 0  # not downloaded
        if index > start and held + size > settings.fetch_batch_bytes:
            yield uids[start:index]
            start, held = index, 0
        held += size
    if start < len(uids):
        yield uids[start:]


def _store_chunk(
    where: Where,
    chunk: Sequence[int],
    sizes: dict[int, int],
    bodies: dict[int, bytes],
    db: SessionFactory,
    settings: Settings,
    counts: Counts,
) -> list[int]:
    new_ids: list[int] = []
    with transaction(db) as session:
        for uid in chunk:
            fetched = bodies.get(uid)
            small = sizes.get(uid, 0) <= settings.max_message_bytes
            if uid not in sizes or fetched is None:
                continue  # expunged while we were fetching
            raw = fetched if small else None
            if raw is not None and _recognise(session, where, uid, raw):
                counts.recognised += 1
                continue
            item = NewMessage(
                account_id=where.account_id,
                folder=where.folder,
                uidvalidity=where.uidvalidity,
                uid=uid,
                size=sizes[uid],
                raw=raw,
            )
            outcome = store_message(session, item, settings=settings)
            if raw is None and outcome.message_id is not None:
                _describe_unfetched(session, outcome.message_id, fetched)
            _count(counts, outcome.status)
            if outcome.message_id is not None and outcome.status == "received":
                new_ids.append(outcome.message_id)
        advance_mark(session, where, max(chunk))
    return new_ids


def _recognise(session: Session, where: Where, uid: int, raw: bytes) -> bool:
    """Mail stored under an older UIDVALIDITY of this folder, byte for byte: give that row the
    new identity instead of storing it again. One old row answers one new UID, so two identical
    messages in the new folder are still two. (The hash decides; a Message-ID cannot.)"""
    digest = hashlib.sha256(raw).hexdigest()
    old_id = session.scalar(
        select(Message.id)
        .where(
            Message.account_id == where.account_id,
            Message.raw_sha256 == digest,
            Message.folder == where.folder,
            Message.uidvalidity != where.uidvalidity,
        )
        .order_by(Message.id)
        .limit(1)
    )
    if old_id is None:
        return False
    try:
        with session.begin_nested():
            session.execute(
                update(Message)
                .where(Message.id == old_id)
                .values(uidvalidity=where.uidvalidity, uid=uid)
            )
    except IntegrityError:
        log.warning("%s: UID %s is stored already; keeping the older row", where, uid)
    return True


def _describe_unfetched(session: Session, message_id: int, head: bytes) -> None:
    """A too-large message still says who sent what, and when, from its header block."""
    try:
        parsed = parse_email(head)
    except Exception:  # a header block not even the parser can read: the row stays bare
        log.warning("message %s: its headers could not be read", message_id)
        return
    row = session.get_one(Message, message_id)
    row.subject, row.from_addr, row.sent_at = parsed.subject, parsed.from_addr, parsed.date
    row.to_addrs = list(parsed.to_addrs)
    row.message_id_header = parsed.message_id[:998] if parsed.message_id else None


def _count(counts: Counts, status: str) -> None:
    if status == "duplicate":
        counts.duplicates += 1
        return
    counts.stored += 1
    if status == "too_large":
        counts.too_large += 1
    elif status == "failed":
        counts.failed += 1


def prepare_folder_state(db: SessionFactory, where: Where) -> int:
    """The UID to continue after; a new UIDVALIDITY restarts the folder from the top."""
    with transaction(db) as session:
        state = _folder_state(session, where)
        if state is None:
            session.add(
                FolderState(
                    account_id=where.account_id,
                    folder=where.folder,
                    uidvalidity=where.uidvalidity,
                    high_water_uid=0,
                )
            )
            return 0
        if state.uidvalidity != where.uidvalidity:
            log.warning(
                "account %s folder %s: UIDVALIDITY %s -> %s, resyncing",
                where.account_id,
                where.folder,
                state.uidvalidity,
                where.uidvalidity,
            )
            state.uidvalidity = where.uidvalidity
            state.high_water_uid = 0
        return state.high_water_uid


def advance_mark(session: Session, where: Where, uid: int) -> None:
    state = _folder_state(session, where)
    if state is not None and state.uidvalidity == where.uidvalidity and uid > state.high_water_uid:
        state.high_water_uid = uid


def set_remaining(db: SessionFactory, where: Where, remaining: int) -> None:
    with transaction(db) as session:
        state = _folder_state(session, where)
        if state is not None:
            state.remaining = remaining


def skip_to(db: SessionFactory, where: Where, uid: int) -> None:
    """Move the mark past UIDs deliberately left behind (older than --since)."""
    with transaction(db) as session:
        advance_mark(session, where, uid)


def _folder_state(session: Session, where: Where) -> FolderState | None:
    return session.scalars(
        select(FolderState).where(
            FolderState.account_id == where.account_id, FolderState.folder == where.folder
        )
    ).one_or_none()


def _mark_queued(db: SessionFactory, message_ids: list[int]) -> None:
    if not message_ids:
        return
    with transaction(db) as session:
        session.execute(
            update(Message)
            .where(Message.id.in_(message_ids), Message.status == "received")
            .values(status="queued", status_changed_at=datetime.now(UTC))
        )
