"""A folder as the database knows it: its UIDVALIDITY, the high-water mark, and after a
UIDVALIDITY change, the mail stored before it, recognised by the hash of its bytes."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import FolderState, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Where:
    """The folder being read, as the database knows it."""

    account_id: int
    folder: str
    uidvalidity: int
    # Rows of this folder under another UIDVALIDITY exist: new mail is compared with them.
    resync: bool = False


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


def stored_under_other_uidvalidity(db: SessionFactory, where: Where) -> bool:
    """Whether the folder holds mail from before a UIDVALIDITY change, which new mail must be
    compared with (one indexed look-up per folder and pass, not one per message)."""
    with db() as session:
        query = exists().where(
            Message.account_id == where.account_id,
            Message.folder == where.folder,
            Message.uidvalidity != where.uidvalidity,
        )
        return bool(session.scalar(select(query)))


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


class OlderCopies:
    """Mail stored under an older UIDVALIDITY of this folder, byte for byte, looked up for a
    whole chunk at once. A match gives that row the new identity instead of storing it again;
    one old row answers one new UID, so two identical messages in the new folder are still
    two. (The hash decides; a Message-ID cannot.)"""

    def __init__(self, session: Session, where: Where, raws: Sequence[bytes]) -> None:
        self._session, self._where = session, where
        digests = {hashlib.sha256(raw).hexdigest() for raw in raws}
        self._rows: dict[str, list[int]] = {}
        query = (
            select(Message.raw_sha256, Message.id)
            .where(
                Message.account_id == where.account_id,
                Message.raw_sha256.in_(digests),
                Message.folder == where.folder,
                Message.uidvalidity != where.uidvalidity,
            )
            .order_by(Message.id)
        )
        for digest, row_id in session.execute(query) if digests else ():
            self._rows.setdefault(str(digest), []).append(row_id)

    def take(self, uid: int, raw: bytes) -> bool:
        ids = self._rows.get(hashlib.sha256(raw).hexdigest())
        if not ids:
            return False
        old_id = ids.pop(0)
        try:
            with self._session.begin_nested():
                self._session.execute(
                    update(Message)
                    .where(Message.id == old_id)
                    .values(uidvalidity=self._where.uidvalidity, uid=uid)
                )
        except IntegrityError:
            log.warning("%s: UID %s is stored already; keeping the older row", self._where, uid)
        return True
