"""Drafts in the owner's voice: a style profile from the real Sent folder, the email's language,
and at most one draft per message under redelivered tasks."""

from __future__ import annotations

import json
import re
import threading

from sqlalchemy import Engine, func, select

from tests.conftest import ImapUser
from tests.integration.conftest import Cli, Worker, configure_user, wait_until
from tests.integration.seed import RecordingEnqueuer, runtime_for, seed_user
from tests.integration.stored_mail import draft, mail, store_raw, triage
from tests.support.dovecot import Dovecot
from tests.support.model_server import FakeModelServer, RecordedRequest, Reply
from tests.support.triage_responder import request_text, task_of, triage_and_draft
from triage.adapters.db.tables import Draft, Message, UsageEntry, User
from triage.config import Settings
from triage.domain import statuses
from triage.runtime import build_runtime

SENT = [
    mail(
        "Hi Tom,\n\nthat works for me, see you Thursday.\n\nCheers,\nBob\n-- \nBob Example\n"
        "ACME Corp, 555-0100\n",
        subject="Re: Thursday",
        sender="Bob <bob@example.test>",
    ),
    mail(
        "Hi Ana,\n\nshort answer: yes, go ahead with the order.\n\nCheers,\nBob\n\n"
        "On Mon, 2 Nov 2026, Ana <ana@example.test> wrote:\n> SECRET-QUOTED-TEXT shall I order?\n",
        subject="Re: Order",
        sender="Bob <bob@example.test>",
    ),
    mail("ok", subject="Re: ping", sender="Bob <bob@example.test>"),  # too short to teach style
]
PROFILE = "Greets with 'Hi <name>,', short and direct, signs off 'Cheers, Bob'."


def voice_model(request: RecordedRequest) -> Reply:
    """Writes the profile, and drafts in whatever language the prompt asks for."""
    if task_of(request) == "style":
        return Reply(content=json.dumps({"profile": PROFILE}))
    if task_of(request) == "draft":
        system = request.messages[0]["content"]
        language = re.search(r"Write the reply in ([A-Z]\w+)\.", system)
        body = (
            "Hier ist ein Entwurf:\n\nHallo Anna,\n\nja, Freitag passt.\n\nCheers,\nBob"
            if language and language.group(1) == "German"
            else "Hi Anna,\n\nyes, Friday works.\n\nCheers,\nBob"
        )
        return Reply(content=json.dumps({"body": body}))
    return triage_and_draft(request)


def test_style_from_sent_folder_then_a_german_draft_in_that_voice(
    dovecot: Dovecot,
    imap_user: ImapUser,
    model_server: FakeModelServer,
    cli: Cli,
    pg_engine: Engine,
) -> None:
    model_server.responder = voice_model
    dovecot.create_folder(imap_user.username, imap_user.password, "Sent")
    for raw in SENT:
        dovecot.append(imap_user.username, imap_user.password, "Sent", raw)
    configure_user(cli, imap_user, model_server, cli.env)
    out = cli(
        "users", "style", "owner@example.test", "--from-sent", "--account", "1",
        "--folder", "Sent",
    ).stdout  # fmt: skip
    assert "learned from 2 sent messages" in out and PROFILE in out

    (style_request,) = model_server.chat_requests
    sent_text = request_text(style_request)
    assert "see you Thursday" in sent_text and "go ahead with the order" in sent_text
    assert "SECRET-QUOTED-TEXT" not in sent_text and "555-0100" not in sent_text
    with pg_engine.connect() as conn:
        assert conn.scalar(select(User.style_profile)) == PROFILE
        assert conn.scalar(select(UsageEntry.task)) == "style"

    # The worker side: same database and key as the CLI, a German message needing a reply.
    rt = build_runtime(
        Settings(
            database_url=cli.env["TRIAGE_DATABASE_URL"], secret_keys=cli.env["TRIAGE_SECRET_KEYS"]
        )
    )
    german = "Hallo Bob,\n\nkönnen wir uns am Freitag treffen? Bitte gib mir kurz Bescheid.\n"
    message_id = store_raw(rt, 1, 1, mail(german, subject="Treffen am Freitag"))
    enqueue = RecordingEnqueuer()
    assert triage(rt, message_id, enqueue).status == statuses.TRIAGED
    assert enqueue.drafted == [message_id]
    assert draft(rt, message_id).status == statuses.DRAFTED

    draft_request = model_server.chat_requests[-1]
    system = draft_request.messages[0]["content"]
    assert "Write the reply in German." in system and PROFILE in system
    with rt.db() as session:
        body = session.scalars(select(Draft.body)).one()
    assert body == "Hallo Anna,\n\nja, Freitag passt.\n\nCheers,\nBob"  # no preamble


def test_a_written_style_note_and_clear_errors(cli: Cli, pg_engine: Engine) -> None:
    cli("users", "add", "owner@example.test")
    cli.env["STYLE_NOTE"] = "Friendly, first names, no emojis."
    cli("users", "style", "owner@example.test", "--note-env", "STYLE_NOTE")
    with pg_engine.connect() as conn:
        assert conn.scalar(select(User.style_note)) == "Friendly, first names, no emojis."
    both = cli("users", "style", "owner@example.test", check=False)
    assert both.returncode == 2 and "exactly one" in both.stderr
    no_folder = cli(
        "users", "style", "owner@example.test", "--from-sent", "--account", "7", check=False
    )
    assert no_folder.returncode == 2 and "not one of this user's accounts" in no_folder.stderr


def test_concurrent_draft_runs_store_one_draft(
    pg_engine: Engine, migrated_pg: str, model_server: FakeModelServer
) -> None:
    model_server.responder = triage_and_draft
    rt = runtime_for(migrated_pg)
    _, account_id, _ = seed_user(rt, base_url=model_server.base_url, api_key="k")
    message_id = store_raw(rt, account_id, 1, mail("Can you call me?"))
    triage(rt, message_id, RecordingEnqueuer())
    outcomes: list[str] = []
    runs = [
        threading.Thread(target=lambda: outcomes.append(draft(rt, message_id).status))
        for _ in range(3)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=60)
    assert outcomes == [statuses.DRAFTED] * 3
    with rt.db() as session:
        assert session.scalar(select(func.count()).select_from(Draft)) == 1


def test_redelivered_draft_tasks_add_no_draft_and_no_call(
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
        imap_user.username, imap_user.password, "INBOX", mail("Could you send the file?")
    )
    configure_user(cli, imap_user, model_server, cli.env)
    cli("sync", "--once")

    def drafted() -> bool:
        with pg_engine.connect() as conn:
            return conn.scalar(select(Message.status)) == statuses.DRAFTED

    wait_until(drafted, timeout=60, what="the draft")
    calls = len(model_server.chat_requests)
    with pg_engine.connect() as conn:
        message_id = conn.scalar(select(Message.id))
    app = Celery(broker=cli.env["TRIAGE_BROKER_URL"])
    ids = [app.send_task("triage.draft", args=[message_id], queue="draft").id for _ in range(2)]
    for task_id in ids:
        worker.wait_for_log(f"[{task_id}] succeeded")
    with pg_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Draft)) == 1
    assert len(model_server.chat_requests) == calls
