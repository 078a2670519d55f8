"""A server without MOVE: write-back tags the message and leaves it in place (no COPY+EXPUNGE)."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine

from tests.integration.seed import runtime_for, seed_user
from tests.support.dovecot import Dovecot, DovecotError
from tests.support.services import ServiceUnavailable
from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, Message, TriageResult
from triage.adapters.imap import ImapMailbox
from triage.pipeline.credentials import secret_owner
from triage.pipeline.write_back import write_back_message

# Dovecot's own capability list less MOVE (imap_capability replaces the advertised list).
CAPABILITIES = (
    "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT THREAD=REFERENCES "
    "UIDPLUS CHILDREN NAMESPACE UNSELECT"
)


class DovecotWithoutMove(Dovecot):
    def _write_files(self) -> None:
        super()._write_files()
        config = self.config_path.read_text()
        self.config_path.write_text(config + f"imap_capability = {CAPABILITIES}\n")


@pytest.fixture(scope="module")
def old_server() -> Iterator[Dovecot]:
    try:
        server = DovecotWithoutMove().start()
    except (ServiceUnavailable, DovecotError) as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.close()


def test_without_move_the_message_is_tagged_and_stays(
    old_server: Dovecot, pg_engine: Engine, migrated_pg: str
) -> None:
    old_server.add_user("olduser", "old-pw-1")
    mail = EmailMessage()
    mail["From"], mail["Subject"] = "a@example.test", "Note"
    mail.set_content("Just so you know.")
    uid = old_server.append("olduser", "old-pw-1", "INBOX", mail.as_bytes())
    with old_server.client("olduser", "old-pw-1") as client:
        uidvalidity = int(client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"])
        assert not client.has_capability("MOVE")

    rt = runtime_for(migrated_pg)
    _, account_id, _ = seed_user(rt, base_url="http://127.0.0.1:9", api_key="unused")
    with transaction(rt.db) as session:
        account = session.get_one(MailAccount, account_id)
        account.host, account.port, account.username = old_server.host, old_server.port, "olduser"
        account.password_enc = rt.secrets.encrypt(
            "old-pw-1", owner=secret_owner(account_id, "password")
        )
        account.write_back = {"keywords": True, "moves": {"fyi": "Archive"}}
        message = Message(
            account_id=account_id, folder="INBOX", uidvalidity=uidvalidity, uid=uid,
            subject="Note", status="triaged",
        )  # fmt: skip
        session.add(message)
        session.flush()
        result = dict(prompt_version="t", category="fyi", priority="low", confidence=0.9)
        session.add(
            TriageResult(
                message_id=message.id,
                summary="s",
                needs_reply=False,
                provider="p",
                model="m",
                **result,
            )
        )
        message_id = message.id

    outcome = write_back_message(
        message_id=message_id, db=rt.db, secrets=rt.secrets, open_mailbox=ImapMailbox
    )
    assert outcome.status == "written back"
    with rt.db() as session:
        note = session.get_one(Message, message_id).write_back_note
    assert note == "not moved to Archive: the server does not offer MOVE (and COPY+EXPUNGE deletes)"
    with old_server.client("olduser", "old-pw-1") as client:
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags([uid])[uid]
        assert not client.folder_exists("Archive")
    assert b"$Triage/fyi" in flags and b"\\Deleted" not in flags and b"\\Seen" not in flags
    rt.engine.dispose()
