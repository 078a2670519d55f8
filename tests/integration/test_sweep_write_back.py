"""The sweeper re-sends write-backs whose task was lost, and only those."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from tests.integration.seed import RecordingEnqueuer, runtime_for, seed_message, seed_user
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, Message, TriageResult
from triage.domain import statuses
from triage.pipeline.sweep import sweep_stuck

LONG_AGO = datetime.now(UTC) - timedelta(hours=1)


def test_a_triaged_message_whose_write_back_was_lost_is_sent_again(
    pg_engine: Engine, migrated_pg: str
) -> None:
    rt = runtime_for(migrated_pg)
    user_id, writing, _setting = seed_user(rt, base_url="http://127.0.0.1:9", api_key="sk-wb")
    with transaction(rt.db) as session:
        account = MailAccount(user_id=user_id, host="h", port=1, security="plain", username="u")
        session.add(account)
        session.flush()
        silent = account.id  # write-back off, as by default
    lost = seed_message(rt, writing, uid=1)
    done = seed_message(rt, writing, uid=2)
    given_up = seed_message(rt, writing, uid=3)
    recent = seed_message(rt, writing, uid=4)
    untriaged = seed_message(rt, writing, uid=5)
    off = seed_message(rt, silent, uid=1)
    with transaction(rt.db) as session:
        session.get_one(MailAccount, writing).write_back = {"keywords": True}
        for message_id in (lost, done, given_up, recent, off):
            message = session.get_one(Message, message_id)
            message.status = statuses.TRIAGED
            message.status_changed_at = datetime.now(UTC) if message_id == recent else LONG_AGO
            session.add(
                TriageResult(
                    message_id=message_id,
                    prompt_version="v1",
                    category="fyi",
                    priority="normal",
                    confidence=0.9,
                    summary="s",
                    needs_reply=False,
                    provider="openai",
                    model="m",
                )
            )
        session.get_one(Message, done).written_back_at = LONG_AGO
        session.get_one(Message, given_up).write_back_note = "write-back gave up after 5 attempts"
        untriaged_row = session.get_one(Message, untriaged)
        untriaged_row.status, untriaged_row.status_changed_at = statuses.TRIAGED, LONG_AGO

    enqueue = RecordingEnqueuer()
    sweep_stuck(db=rt.db, enqueue=enqueue, older_than=timedelta(minutes=10))

    # Only the first: the others were written back, given up, are still fresh, have no
    # result to write, or belong to an account that writes nothing back.
    assert enqueue.written_back == [lost]
    assert enqueue.triaged == []
    rt.engine.dispose()
