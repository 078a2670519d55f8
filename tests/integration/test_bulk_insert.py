"""A batch of messages stored at once (COPY on Postgres) is stored exactly as one at a time."""

from __future__ import annotations

import io
from email.message import EmailMessage
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DataError, OperationalError

from tests.integration.conftest import CORPUS
from tests.support.byok import add_user_to
from triage.adapters.db import bulk_insert
from triage.adapters.db.session import SessionFactory, make_session_factory, transaction
from triage.adapters.db.tables import Attachment, Message, User
from triage.config import Settings
from triage.pipeline import message_store
from triage.pipeline.message_store import NewMessage, store_message, store_messages

SETTINGS = Settings(secret_keys="unused")
# Filled by the database or differing by design between the two copies.
NOT_COMPARED = {"id", "uidvalidity", "created_at", "status_changed_at"}


def _photo_mail() -> bytes:
    """A date with an offset past -15:59, and an image attachment."""
    message = EmailMessage()
    message["From"] = "Ana <ana@example.test>"
    message["To"] = "owner@example.test, other@example.test"
    message["Subject"] = "Trip photo"
    message["Date"] = "Wed, 21 Aug 2002 20:31:57 -1600"
    message.set_content("The photo from the trip.")
    picture = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 120, 200)).save(picture, "PNG")
    message.add_attachment(picture.getvalue(), maintype="image", subtype="png", filename="p.png")
    return message.as_bytes()


def _far_future_mail() -> bytes:
    """A date past the year 9999 in UTC: the parser drops it (no row could be loaded again)."""
    message = EmailMessage()
    message["From"] = "spam@example.test"
    message["Subject"] = "Act now"
    message["Date"] = "Fri, 31 Dec 9999 23:00:00 -1500"
    message.set_content("Offer ends soon.")
    return message.as_bytes()


def _raws() -> list[bytes]:
    corpus = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    return [*corpus, _far_future_mail(), _photo_mail()]


def _new(account_id: int, uidvalidity: int, uid: int, raw: bytes) -> NewMessage:
    return NewMessage(account_id, "INBOX", uidvalidity, uid, len(raw), raw)


def _columns(row: Any) -> dict[str, Any]:
    table = type(row).__table__
    return {c.key: getattr(row, c.key) for c in table.columns if c.key not in NOT_COMPARED}


def test_a_batch_is_stored_column_for_column_as_one_message_at_a_time(
    account_db: tuple[SessionFactory, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, account_id = account_db
    raws = _raws()
    with monkeypatch.context() as patched:

        def no_fallback(*_args: Any, **_kwargs: Any) -> None:
            raise AssertionError("the batch fell back to one message at a time")

        patched.setattr(message_store, "store_message", no_fallback)
        with transaction(db) as session:
            batch = store_messages(
                session,
                [_new(account_id, 1, uid, raw) for uid, raw in enumerate(raws, 1)],
                settings=SETTINGS,
            )
    with transaction(db) as session:
        single = [
            store_message(session, _new(account_id, 2, uid, raw), settings=SETTINGS)
            for uid, raw in enumerate(raws, 1)
        ]

    assert [o.status for o in batch] == [o.status for o in single]
    assert len({o.message_id for o in batch}) == len(raws)
    with transaction(db) as session:
        for from_batch, one_by_one in zip(batch, single, strict=True):
            copied = session.get_one(Message, from_batch.message_id)
            flushed = session.get_one(Message, one_by_one.message_id)
            assert _columns(copied) == _columns(flushed)
            assert copied.raw == flushed.raw  # deferred, so loaded apart
            assert [_columns(a) | {"message_id": 0} for a in copied.attachments] == [
                _columns(a) | {"message_id": 0} for a in flushed.attachments
            ]
        photo = session.get_one(Message, batch[-1].message_id)
        assert photo.sent_at is not None
        assert [a.for_model for a in photo.attachments] == [True]
        assert session.scalars(select(Attachment.message_id)).all().count(photo.id) == 1


def test_a_batch_meeting_rows_stored_meanwhile_stores_the_rest(
    account_db: tuple[SessionFactory, int],
) -> None:
    """Another fetcher stored one of the batch first: that one is a duplicate, the rest are
    stored, and the transaction goes on."""
    db, account_id = account_db
    raws = _raws()[:5]
    with transaction(db) as session:
        store_message(session, _new(account_id, 1, 3, raws[2]), settings=SETTINGS)

    with transaction(db) as session:
        outcomes = store_messages(
            session,
            [_new(account_id, 1, uid, raw) for uid, raw in enumerate(raws, 1)],
            settings=SETTINGS,
        )
        session.add(User(email="after@example.test"))  # the transaction is still usable

    assert [o.status for o in outcomes] == ["received"] * 2 + ["duplicate"] + ["received"] * 2
    with transaction(db) as session:
        uids = session.scalars(select(Message.uid).order_by(Message.uid)).all()
        assert uids == [1, 2, 3, 4, 5]
        assert session.scalars(select(User).where(User.email == "after@example.test")).one()


def test_a_database_lost_mid_batch_is_sqlalchemys_operational_error(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What callers catch for a flush (the long-running sync survives a database restart by
    catching SQLAlchemyError) is also what a failed COPY raises, and the pool drops the dead
    connection."""
    db = make_session_factory(pg_engine)
    _user_id, account_id = add_user_to(db, "pg@example.test")
    raws = _raws()[:3]
    take_ids = bulk_insert._next_ids

    def lose_the_database_first(cursor: Any, table: Any, count: int) -> list[int]:
        with pg_engine.connect() as other:
            pid = cursor.connection.info.backend_pid
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return take_ids(cursor, table, count)

    monkeypatch.setattr(bulk_insert, "_next_ids", lose_the_database_first)
    with pytest.raises(OperationalError), transaction(db) as session:
        store_messages(
            session,
            [_new(account_id, 1, uid, raw) for uid, raw in enumerate(raws, 1)],
            settings=SETTINGS,
        )
    monkeypatch.undo()
    with transaction(db) as session:  # the pool hands out a live connection again
        outcomes = store_messages(
            session,
            [_new(account_id, 1, uid, raw) for uid, raw in enumerate(raws, 1)],
            settings=SETTINGS,
        )
    assert [o.status for o in outcomes] == ["received"] * 3


def test_a_value_the_database_refuses_is_sqlalchemys_data_error(pg_engine: Engine) -> None:
    """Not a duplicate, so no fallback: the batch fails as a flush would, with SQLAlchemy's
    error (a folder name longer than the column takes; SQLite does not check lengths)."""
    db = make_session_factory(pg_engine)
    _user_id, account_id = add_user_to(db, "pg@example.test")
    raw = _raws()[0]
    item = NewMessage(account_id, "F" * 600, 1, 1, len(raw), raw)
    with pytest.raises(DataError), transaction(db) as session:
        store_messages(session, [item], settings=SETTINGS)
