"""Write-back on real services: keywords, moves and draft APPENDs by a real worker in Dovecot."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

from celery import Celery
from imapclient import IMAPClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.integration.conftest import (
    Cli,
    Worker,
    configure_user,
    start_worker,
    stop_worker,
    wait_until,
)
from tests.support.dovecot import Dovecot
from tests.support.model_server import FakeModelServer
from tests.support.triage_responder import triage_and_draft
from triage.adapters.db.tables import Draft, MailAccount, Message
from triage.domain import statuses

SEEN = b"\\Seen"
DRAFT = b"\\Draft"


def mail(subject: str, body: str, *, message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Sender <alice@example.test>"
    msg["To"] = "owner@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg.as_bytes()


def account_id(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalars(select(MailAccount.id)).one()


def messages(engine: Engine) -> list[Message]:
    with Session(engine) as session:
        return list(session.scalars(select(Message).order_by(Message.uid)))


def all_written_back(engine: Engine, count: int) -> bool:
    done = [m for m in messages(engine) if m.written_back_at is not None]
    return len(done) == count


def flags_in(imap: ImapUser, dovecot: Dovecot, folder: str) -> dict[int, set[bytes]]:
    """FLAGS of every message in a folder, read over a second, read-only connection."""
    with dovecot.client(imap.username, imap.password) as client:
        client.select_folder(folder, readonly=True)
        found = client.fetch(client.search(["ALL"]), ["FLAGS"])
    return {uid: set(data[b"FLAGS"]) for uid, data in found.items()}


def headers_in(client: IMAPClient, uids: list[int]) -> dict[int, email.message.EmailMessage]:
    data = client.fetch(uids, ["BODY.PEEK[HEADER]"])
    parser = email.policy.default
    return {
        uid: email.message_from_bytes(item[b"BODY[HEADER]"], policy=parser)
        for uid, item in data.items()
    }


def test_a_worker_tags_and_moves_triaged_mail_without_marking_it_read(
    dovecot: Dovecot,
    imap_user: ImapUser,
    model_server: FakeModelServer,
    cli: Cli,
    worker: Worker,
    pg_engine: Engine,
) -> None:
    model_server.responder = triage_and_draft
    user, password = imap_user.username, imap_user.password
    question = dovecot.append(
        user, password, "INBOX", mail("Lunch", "Can we meet at noon?", message_id="<q@x.test>")
    )
    note = dovecot.append(
        user, password, "INBOX", mail("Report", "The report is done.", message_id="<n@x.test>")
    )
    letter = mail("Weekly", "News. To unsubscribe click here.", message_id="<l@x.test>")
    dovecot.append(user, password, "INBOX", letter)
    configure_user(cli, imap_user, model_server, cli.env)
    out = cli(
        "accounts", "write-back", "--account", str(account_id(pg_engine)),
        "--keywords", "on", "--move", "newsletter=Triage/Newsletters",
    )  # fmt: skip
    assert "keywords on" in out.stdout and "newsletter -> Triage/Newsletters" in out.stdout

    cli("sync", "--once")
    wait_until(lambda: all_written_back(pg_engine, 3), timeout=90, what="three write-backs")

    inbox = flags_in(imap_user, dovecot, "INBOX")
    assert set(inbox) == {question, note}, "only the newsletter leaves the INBOX"
    assert b"$Triage/needs_reply" in inbox[question]
    assert b"$Triage/fyi" in inbox[note]
    moved = flags_in(imap_user, dovecot, "Triage/Newsletters")
    assert len(moved) == 1
    (moved_flags,) = moved.values()
    assert b"$Triage/newsletter" in moved_flags, "tagged before the move, the keyword moved along"
    assert all(SEEN not in flags for flags in [*inbox.values(), moved_flags])
    by_subject = {m.subject: m for m in messages(pg_engine)}
    assert by_subject["Weekly"].write_back_note == "moved to Triage/Newsletters"
    assert by_subject["Lunch"].write_back_note is None


def test_mail_gone_or_renumbered_before_write_back_is_left_alone(
    dovecot: Dovecot,
    imap_user: ImapUser,
    model_server: FakeModelServer,
    cli: Cli,
    pg_engine: Engine,
    tmp_path: Path,
) -> None:
    """Expunged mail is tolerated; after a UIDVALIDITY change the stored UID names nothing."""
    model_server.responder = triage_and_draft
    user, password = imap_user.username, imap_user.password
    dovecot.create_folder(user, password, "Work")
    gone = dovecot.append(user, password, "INBOX", mail("A", "Gone soon.", message_id="<a@x>"))
    kept = dovecot.append(user, password, "INBOX", mail("B", "Still here.", message_id="<b@x>"))
    dovecot.append(user, password, "Work", mail("C", "Renumbered.", message_id="<c@x>"))
    configure_user(cli, imap_user, model_server, cli.env)
    aid = str(account_id(pg_engine))
    with Session(pg_engine) as session, session.begin():
        session.execute(update(MailAccount).values(folders=["INBOX", "Work"]))
    cli("accounts", "write-back", "--account", aid, "--keywords", "on")
    cli("sync", "--once")  # stored and queued; no worker runs yet

    with dovecot.client(user, password) as client:
        client.select_folder("INBOX")
        client.delete_messages([gone])  # the user deletes it before triage gets to it
        client.expunge()
    dovecot.delete_folder(user, password, "Work")
    dovecot.create_folder(user, password, "Work")  # a new UIDVALIDITY; UIDs start at 1 again
    stranger = dovecot.append(user, password, "Work", mail("D", "Other.", message_id="<d@x>"))

    worker = start_worker(cli.env, tmp_path / "worker.log")
    try:
        wait_until(lambda: all_written_back(pg_engine, 3), timeout=90, what="three write-backs")
    finally:
        stop_worker(worker)

    rows = {m.subject: m for m in messages(pg_engine)}
    assert rows["A"].write_back_note == "the message no longer exists in INBOX"
    assert rows["A"].status == statuses.TRIAGED
    assert "new UIDVALIDITY" in (rows["C"].write_back_note or "")
    assert rows["B"].write_back_note is None
    assert b"$Triage/fyi" in flags_in(imap_user, dovecot, "INBOX")[kept]
    work = flags_in(imap_user, dovecot, "Work")
    assert not any(flag.startswith(b"$Triage") for flag in work[stranger]), "tagged a stranger"


def test_a_draft_is_appended_once_to_the_drafts_folder(
    dovecot: Dovecot,
    imap_user: ImapUser,
    model_server: FakeModelServer,
    cli: Cli,
    worker: Worker,
    pg_engine: Engine,
) -> None:
    model_server.responder = triage_and_draft
    user, password = imap_user.username, imap_user.password
    original = mail("Dinner plans", "Are you free on Friday?", message_id="<orig-1@x.test>")
    dovecot.append(user, password, "INBOX", original)
    configure_user(cli, imap_user, model_server, cli.env)
    aid = str(account_id(pg_engine))
    out = cli("accounts", "write-back", "--account", aid, "--drafts-folder", "Drafts")
    assert "drafts on, to Drafts" in out.stdout and "keywords off" in out.stdout

    cli("sync", "--once")
    wait_until(lambda: appended(pg_engine) is not None, timeout=90, what="the draft APPEND")
    first_uid = appended(pg_engine)

    with dovecot.client(user, password) as client:
        client.select_folder("Drafts", readonly=True)
        uids = client.search(["ALL"])
        assert uids == [first_uid]
        flags = set(client.get_flags(uids)[first_uid])
        header = headers_in(client, uids)[first_uid]
    assert {DRAFT, SEEN} <= flags
    assert header["In-Reply-To"] == "<orig-1@x.test>"
    assert header["References"] == "<orig-1@x.test>"
    assert header["Subject"] == "Re: Dinner plans"
    assert header["To"] == "Alice Sender <alice@example.test>"
    assert header["From"] == "owner@example.test"
    assert not flags_in(imap_user, dovecot, "INBOX")[1] & {SEEN}, "the original stays unread"

    # Redelivered, and redelivered after a crash that lost the record of the APPEND.
    app = Celery(broker=cli.env["TRIAGE_BROKER_URL"])
    message_id = messages(pg_engine)[0].id
    task = app.send_task("triage.write_back", args=[message_id], queue="sync").id
    worker.wait_for_log(f"[{task}] succeeded")
    with Session(pg_engine) as session, session.begin():
        session.execute(update(Draft).values(appended_at=None, appended_uid=None))
    task = app.send_task("triage.write_back", args=[message_id], queue="sync").id
    worker.wait_for_log(f"[{task}] succeeded")
    assert appended(pg_engine) == first_uid, "the earlier APPEND was found, not repeated"
    with dovecot.client(user, password) as client:
        client.select_folder("Drafts", readonly=True)
        assert client.search(["ALL"]) == [first_uid]


def appended(engine: Engine) -> int | None:
    with Session(engine) as session:
        draft = session.scalars(select(Draft)).first()
        return draft.appended_uid if draft is not None and draft.appended_at else None


def test_bad_account_options_are_refused_with_a_clear_message(cli: Cli, pg_engine: Engine) -> None:
    cli("users", "add", "owner@example.test")
    base = ["accounts", "add", "--user", "owner@example.test", "--host", "127.0.0.1"]
    cases = {
        ("--username", "u"): "give --password-env VAR, or --oauth2",
        ("--username", "u", "--oauth2"): "--oauth2 needs --oauth-provider, --client-id",
        ("--username", "u", "--oauth2", "--oauth-provider", "custom", "--client-id", "c",
         "--refresh-token-env", "RT"): "--oauth-provider custom needs --token-url",
    }  # fmt: skip
    cli.env["RT"] = "rt-value"
    for extra, message in cases.items():
        result = cli(*base, *extra, check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    with Session(pg_engine) as session:
        assert session.scalars(select(MailAccount)).first() is None, "nothing half-made is kept"

    cli.env["PW"] = "secret-pw"
    cli(*base, "--username", "u", "--password-env", "PW")
    aid = str(account_id(pg_engine))
    for args, message in {
        ("--move", "nonsense=Folder"): "unknown category nonsense",
        ("--move", "fyi=INBOX"): "INBOX is a folder this account syncs",
        ("--move", "fyi"): "--move wants CATEGORY=FOLDER",
    }.items():
        result = cli("accounts", "write-back", "--account", aid, *args, check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    result = cli("accounts", "reauth", "--account", aid, "--refresh-token-env", "RT", check=False)
    assert result.returncode == 2 and "logs in with a password" in result.stderr
    with Session(pg_engine) as session:
        assert session.scalars(select(MailAccount.write_back)).one() == {}


def test_the_embedded_default_writes_back_too(
    dovecot: Dovecot, imap_user: ImapUser, model_server: FakeModelServer, tmp_path: Path
) -> None:
    from tests.integration.conftest import base_env

    model_server.responder = triage_and_draft
    user, password = imap_user.username, imap_user.password
    uid = dovecot.append(user, password, "INBOX", mail("Hi", "Free at six?", message_id="<e@x>"))
    cli = Cli(base_env(tmp_path))  # SQLite, no broker: the local thread pool runs write-back
    cli("db", "upgrade")
    configure_user(cli, imap_user, model_server, cli.env)
    cli("accounts", "write-back", "--account", "1", "--keywords", "on", "--append-drafts", "on")
    ran = cli("run", "--once")
    (row,) = [json.loads(line) for line in cli("export").stdout.splitlines()]
    assert row["draft"] is not None, ran.stderr

    assert b"$Triage/needs_reply" in flags_in(imap_user, dovecot, "INBOX")[uid]
    assert "Traceback" not in ran.stderr, ran.stderr
    drafts = flags_in(imap_user, dovecot, "Drafts")
    assert len(drafts) == 1 and all(DRAFT in flags for flags in drafts.values())
