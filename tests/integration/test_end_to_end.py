"""The whole path on real services: Dovecot → sync → Redis → a worker process → model → Postgres."""

from __future__ import annotations

import email
import email.policy
import json
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.integration.conftest import (
    CORPUS,
    TEST_API_KEY,
    Cli,
    Worker,
    base_env,
    configure_user,
    wait_until,
)
from tests.support.dovecot import Dovecot
from tests.support.model_server import FakeModelServer
from tests.support.triage_responder import image_parts, subject_of, task_of, triage_and_draft
from triage.adapters.db.tables import ActionItem, Attachment, Draft, Message, TriageResult
from triage.domain import statuses

EXPORT_KEYS = {
    "id",
    "account",
    "folder",
    "uid",
    "message_id",
    "subject",
    "from",
    "date",
    "status",
    "error",
    "screening_rule",
    "defects",
    "images",
    "result",
    "results_count",
    "action_items",
    "draft",
}
RESULT_KEYS = {
    "category",
    "priority",
    "confidence",
    "summary",
    "needs_reply",
    "injection_suspected",
    "flags",
    "screening_rule",
    "provider",
    "model",
    "prompt_version",
    "input_tokens",
    "output_tokens",
    "cost_usd",
}


def corpus_files() -> list[Path]:
    files = sorted(CORPUS.glob("*.eml"))
    assert len(files) > 150, f"corpus missing at {CORPUS}"
    return files


IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"RIFF", b"BM")


def files_carrying_images() -> set[str]:
    """An oracle apart from our parser: files with a part whose bytes start like an image."""
    carrying = set()
    for path in corpus_files():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
        for part in message.walk():
            payload = part.get_payload(decode=True) if not part.is_multipart() else None
            if isinstance(payload, bytes) and payload.startswith(IMAGE_MAGIC):
                carrying.add(path.name)
    return carrying


def append_corpus(dovecot: Dovecot, imap: ImapUser) -> dict[int, str]:
    """APPEND every corpus message; returns UID -> file name."""
    return {
        dovecot.append(imap.username, imap.password, "INBOX", path.read_bytes()): path.name
        for path in corpus_files()
    }


def all_finished(engine: Engine) -> bool:
    with Session(engine) as session:
        unfinished = session.scalar(
            select(func.count()).where(Message.status.in_(statuses.UNFINISHED))
        )
        pending_drafts = session.scalar(
            select(func.count())
            .select_from(TriageResult)
            .where(
                TriageResult.needs_reply.is_(True),
                Message.id == TriageResult.message_id,
                Message.status == statuses.TRIAGED,
                Message.error.is_(None),
            )
        )
    return unfinished == 0 and pending_drafts == 0


def test_corpus_flows_through_a_real_worker(
    dovecot: Dovecot,
    imap_user: ImapUser,
    model_server: FakeModelServer,
    cli: Cli,
    worker: Worker,
    pg_engine: Engine,
) -> None:
    model_server.responder = triage_and_draft
    uid_to_file = append_corpus(dovecot, imap_user)
    configure_user(cli, imap_user, model_server, cli.env)

    cli("sync", "--once")
    wait_until(lambda: all_finished(pg_engine), timeout=240, what="every message to finish")

    with Session(pg_engine) as session:
        messages = session.scalars(select(Message).order_by(Message.uid)).all()
        assert {m.uid: m for m in messages}.keys() == uid_to_file.keys(), "a message was lost"
        for message in messages:
            assert message.status in {
                statuses.TRIAGED,
                statuses.DRAFTED,
                statuses.FAILED,
                statuses.ENCRYPTED,
                statuses.SKIPPED,  # screened out (bounces, auto-replies): no model call
            }, (message.uid, message.status)
            if message.status == statuses.SKIPPED:
                assert message.screening_rule and message.error, message.uid
            assert message.raw is not None and len(message.raw) == message.size
            if message.status == statuses.FAILED:
                assert message.error, f"uid {message.uid} failed without a reason"
        triaged = [m for m in messages if m.status in (statuses.TRIAGED, statuses.DRAFTED)]
        skipped = sum(m.status == statuses.SKIPPED for m in messages)
        assert len(triaged) >= len(messages) - skipped - 5
        results = session.scalars(select(TriageResult)).all()
        assert len(results) == len(triaged)
        assert all(r.input_tokens > 0 and r.output_tokens > 0 for r in results)
        items = session.scalar(select(func.count()).select_from(ActionItem))
        expected_items = sum(1 for r in results if r.action_items)
        assert items == expected_items and items > 0
        drafts = session.scalar(select(func.count()).select_from(Draft))
        assert drafts == sum(1 for r in results if r.needs_reply) > 0
        sent_image_subjects = Counter(
            m.subject
            for m in messages
            if any(a.for_model for a in m.attachments) and m.status != statuses.FAILED
        )
        files_with_images = {
            uid_to_file[m.uid] for m in messages if any(a.for_model for a in m.attachments)
        }
        unsent = session.scalars(
            select(Attachment).where(
                Attachment.sniffed_type.like("image/%"), Attachment.for_model.is_(False)
            )
        ).all()
        assert all(a.skip_reason for a in unsent), "an image was dropped without a reason"

    chat = model_server.chat_requests
    assert all(r.header("Authorization") == f"Bearer {TEST_API_KEY}" for r in chat)
    with_images = Counter(subject_of(r) for r in chat if task_of(r) == "triage" and image_parts(r))
    assert with_images == sent_image_subjects
    assert files_with_images, "no corpus image reached the model"
    assert files_with_images <= files_carrying_images(), "sent an image from a mail without one"

    # A second pass finds nothing new.
    again = cli("sync", "--once")
    assert "stored 0" in again.stderr
    with Session(pg_engine) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == len(uid_to_file)


def test_redelivered_task_creates_no_second_result(
    dovecot: Dovecot,
    imap_user: ImapUser,
    model_server: FakeModelServer,
    cli: Cli,
    worker: Worker,
    pg_engine: Engine,
) -> None:
    from celery import Celery

    model_server.responder = triage_and_draft
    dovecot.append(
        imap_user.username,
        imap_user.password,
        "INBOX",
        (CORPUS / "cpython-msg_01.eml").read_bytes(),
    )
    configure_user(cli, imap_user, model_server, cli.env)
    cli("sync", "--once")
    wait_until(lambda: all_finished(pg_engine), timeout=60, what="the message to finish")
    calls_before = len(model_server.chat_requests)
    with Session(pg_engine) as session:
        message_id = session.scalars(select(Message.id)).one()

    app = Celery(broker=cli.env["TRIAGE_BROKER_URL"])
    task_id = app.send_task("triage.triage", args=[message_id], queue="triage").id
    worker.wait_for_log(f"[{task_id}] succeeded")
    with Session(pg_engine) as session:
        assert session.scalar(select(func.count()).select_from(TriageResult)) == 1
        assert session.scalar(select(func.count()).select_from(Draft)) <= 1
    assert len(model_server.chat_requests) == calls_before


def test_export_prints_one_line_per_message_in_the_documented_shape(
    dovecot: Dovecot,
    imap_user: ImapUser,
    model_server: FakeModelServer,
    cli: Cli,
    worker: Worker,
    pg_engine: Engine,
) -> None:
    model_server.responder = triage_and_draft
    for name in ("cpython-msg_01.eml", "cpython-msg_07.eml", "flanker-mailgun-pic.eml"):
        dovecot.append(
            imap_user.username, imap_user.password, "INBOX", (CORPUS / name).read_bytes()
        )
    configure_user(cli, imap_user, model_server, cli.env)
    cli("sync", "--once")
    wait_until(lambda: all_finished(pg_engine), timeout=60, what="messages to finish")

    lines = cli("export", "--format", "jsonl").stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        row = json.loads(line)
        assert row.keys() >= EXPORT_KEYS
        assert row["results_count"] == 1
        assert row["result"].keys() >= RESULT_KEYS
        assert row["result"]["provider"] == "openai"
    assert TEST_API_KEY not in "\n".join(lines)
    assert cli.env["E2E_IMAP_PASSWORD"] not in "\n".join(lines)


def test_the_same_flow_runs_embedded_on_sqlite(
    dovecot: Dovecot,
    imap_user: ImapUser,
    model_server: FakeModelServer,
    tmp_path: Path,
) -> None:
    model_server.responder = triage_and_draft
    uids = append_corpus(dovecot, imap_user)
    cli = Cli(base_env(tmp_path))  # no database URL, no broker: the embedded default
    cli("db", "upgrade")
    configure_user(cli, imap_user, model_server, cli.env)
    cli("run", "--once")

    rows = [json.loads(line) for line in cli("export").stdout.splitlines()]
    assert len(rows) == len(uids)
    finished = {
        statuses.TRIAGED,
        statuses.DRAFTED,
        statuses.FAILED,
        statuses.ENCRYPTED,
        statuses.SKIPPED,
    }
    assert all(row["status"] in finished for row in rows)
    skipped = sum(row["status"] == statuses.SKIPPED for row in rows)
    assert sum(row["result"] is not None for row in rows) >= len(uids) - skipped - 5
    assert (tmp_path / "data" / "triage.sqlite3").exists()
    assert any(row["draft"] for row in rows)
    assert any(row["images"] for row in rows)
