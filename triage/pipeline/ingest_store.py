"""Storing fetched mail: bodies in memory-bounded chunks, each stored with the folder's mark."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import Message
from triage.config import Settings
from triage.domain import statuses
from triage.pipeline.folder_state import OlderCopies, Where, advance_mark
from triage.pipeline.mail_reader import (
    ImageLimits,
    Reading,
    ReadMail,
    parse_processes,
    start_reading,
)
from triage.pipeline.message_store import NewMessage, image_limits, store_messages
from triage.pipeline.ports import Enqueuer
from triage.pipeline.sender_images import skip_repeated_images
from triage.pipeline.sync_lease import Lease


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


class Ingester:
    """Sizes first; then bodies under the byte budget, each chunk stored and its mark advanced
    in one transaction, then enqueued. Over the size cap: a `too_large` row, never downloaded.

    A pipeline one chunk deep: a chunk's bodies are parsed in the reader processes while the
    chunk before is stored, so a first sync keeps both cores busy. `finish` stores the last."""

    def __init__(
        self,
        *,
        where: Where,
        db: SessionFactory,
        enqueue: Enqueuer,
        settings: Settings,
        counts: Counts,
    ) -> None:
        self._where, self._db, self._enqueue = where, db, enqueue
        self._settings, self._counts = settings, counts
        self._limits = image_limits(settings)
        self._processes = parse_processes(settings.parse_processes)
        self._pending: _FetchedChunk | None = None

    def feed(self, fetcher: Fetcher, uids: Sequence[int], *, lease: Lease | None = None) -> None:
        if not uids:
            return
        settings = self._settings
        sizes = fetcher.sizes(uids)
        for chunk in size_chunks(uids, sizes, settings):
            if lease is not None:
                lease.renew()
            small = [u for u in chunk if u in sizes and sizes[u] <= settings.max_message_bytes]
            large = [u for u in chunk if u in sizes and u not in small]
            bodies = fetcher.bodies(small)
            read_uids = [uid for uid in small if uid in bodies]  # others expunged meanwhile
            raws = [bodies[uid] for uid in read_uids]
            reading = start_reading(raws, self._limits, processes=self._processes)
            bodies.update(fetcher.headers(large))  # no body: only who sent what, and when
            self.finish()
            self._pending = _FetchedChunk(chunk, sizes, bodies, read_uids, reading)

    def finish(self) -> None:
        """Store the chunk fetched last, if any."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        reads = dict(zip(pending.read_uids, pending.reading.result(), strict=True))
        new_ids = _store_chunk(
            self._where, pending, reads, self._db, self._settings, self._limits, self._counts
        )
        self._enqueue.triage_many(new_ids)
        _mark_queued(self._db, new_ids)


@dataclass
class _FetchedChunk:
    uids: Sequence[int]
    sizes: dict[int, int]
    bodies: dict[int, bytes]
    read_uids: list[int]  # whose bodies are being read, in the order they were handed over
    reading: Reading


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
    fetched_chunk: _FetchedChunk,
    reads: dict[int, ReadMail],
    db: SessionFactory,
    settings: Settings,
    limits: ImageLimits,
    counts: Counts,
) -> list[int]:
    """One transaction for the chunk: rows already there are duplicates (another fetcher got
    there first), mail stored under an older UIDVALIDITY is recognised, the rest inserted."""
    chunk, sizes, bodies = fetched_chunk.uids, fetched_chunk.sizes, fetched_chunk.bodies
    fetched = [uid for uid in chunk if uid in sizes and uid in bodies]  # else expunged meanwhile
    with transaction(db) as session:
        known = _stored_uids(session, where, fetched)
        older = None
        if where.resync:
            older = OlderCopies(session, where, [bodies[uid] for uid in fetched])
        items = []
        for uid in fetched:
            if uid in known:
                counts.duplicates += 1
                continue
            small = sizes[uid] <= settings.max_message_bytes
            if small and older is not None and older.take(uid, bodies[uid]):
                counts.recognised += 1
                continue
            items.append(
                NewMessage(
                    account_id=where.account_id,
                    folder=where.folder,
                    uidvalidity=where.uidvalidity,
                    uid=uid,
                    size=sizes[uid],
                    raw=bodies[uid] if small else None,
                    head=None if small else bodies[uid],
                    read=reads.get(uid),
                )
            )
        new_ids = []
        items = _skip_repeated_images(session, where, items, limits)
        for outcome in store_messages(session, items, settings=settings):
            _count(counts, outcome.status)
            if outcome.message_id is not None and outcome.status == statuses.RECEIVED:
                new_ids.append(outcome.message_id)
        advance_mark(session, where, max(chunk))
    return new_ids


def _skip_repeated_images(
    session: Session, where: Where, items: list[NewMessage], limits: ImageLimits
) -> list[NewMessage]:
    read = [item for item in items if item.raw is not None and item.read is not None]
    raws = [item.raw for item in read if item.raw is not None]
    reads = [item.read for item in read if item.read is not None]
    reads = skip_repeated_images(session, where.account_id, raws, reads, limits)
    by_uid = {item.uid: new for item, new in zip(read, reads, strict=True)}
    return [replace(item, read=by_uid.get(item.uid, item.read)) for item in items]


def _stored_uids(session: Session, where: Where, uids: Sequence[int]) -> set[int]:
    if not uids:
        return set()
    return set(
        session.scalars(
            select(Message.uid).where(
                Message.account_id == where.account_id,
                Message.folder == where.folder,
                Message.uidvalidity == where.uidvalidity,
                Message.uid.in_(uids),
            )
        )
    )


def _count(counts: Counts, status: str) -> None:
    if status == "duplicate":
        counts.duplicates += 1
        return
    counts.stored += 1
    if status == "too_large":
        counts.too_large += 1
    elif status == "failed":
        counts.failed += 1


def _mark_queued(db: SessionFactory, message_ids: list[int]) -> None:
    if not message_ids:
        return
    with transaction(db) as session:
        session.execute(
            update(Message)
            .where(Message.id.in_(message_ids), Message.status == statuses.RECEIVED)
            .values(status=statuses.QUEUED, status_changed_at=datetime.now(UTC))
        )
