"""A folder deleted and recreated (new UIDVALIDITY) is resynced: only really new mail is added."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tests.conftest import ImapUser
from tests.integration.ingest_support import mail, runtime_from, seed_account, sync_once
from tests.support.dovecot import Dovecot
from triage.adapters.db.tables import FolderState, Message

FOLDER = "Projects"


def rows(engine: Engine) -> dict[int, tuple[int, int, str]]:
    """Message row id -> (uidvalidity, uid, subject)."""
    with Session(engine) as session:
        found = session.execute(
            select(Message.id, Message.uidvalidity, Message.uid, Message.subject)
        )
        return {row.id: (row.uidvalidity, row.uid, row.subject) for row in found}


def test_a_recreated_folder_adds_only_the_new_mail(
    dovecot: Dovecot, imap_user: ImapUser, service_env: dict[str, str], pg_engine: Engine
) -> None:
    user, password = imap_user.username, imap_user.password
    old = [
        mail("plain old"),
        mail("no message id", message_id=None),
        mail("shared id, first text", message_id="<same@example.test>"),
        mail("shared id, second text", body="Other words.", message_id="<same@example.test>"),
    ]
    dovecot.create_folder(user, password, FOLDER)
    for raw in old:
        dovecot.append(user, password, FOLDER, raw)
    account_id = seed_account(service_env, imap_user, folders=(FOLDER,))
    rt = runtime_from(service_env)
    assert sync_once(rt, account_id).stored == 4
    before = rows(pg_engine)

    dovecot.delete_folder(user, password, FOLDER)
    dovecot.create_folder(user, password, FOLDER)
    new = [
        mail("really new"),
        old[0],  # a second copy of the same bytes is a second message
        mail("shared id, third text", body="Third.", message_id="<same@example.test>"),
    ]
    uids = [dovecot.append(user, password, FOLDER, raw) for raw in [*old, *new]]

    report = sync_once(rt, account_id)

    assert report.error is None
    assert (report.recognised, report.stored, report.duplicates) == (4, 3, 0)
    after = rows(pg_engine)
    assert len(after) == 7
    with Session(pg_engine) as session:
        state = session.scalars(select(FolderState)).one()
    new_uid_of = {
        subject: uids[n]
        for n, subject in enumerate(
            ["plain old", "no message id", "shared id, first text", "shared id, second text"]
        )
    }
    for row_id, (_uidvalidity, _uid, subject) in before.items():
        # The same rows (and whatever hangs off them) now carry the new identity.
        assert after[row_id] == (state.uidvalidity, new_uid_of[subject], subject)
    assert state.uidvalidity != next(iter(before.values()))[0]
    assert sorted(uid for _, uid, _ in after.values()) == sorted(uids)
    assert sorted(subject for _, _, subject in after.values()).count("plain old") == 2

    again = sync_once(rt, account_id)
    assert (again.stored, again.recognised, again.duplicates) == (0, 0, 0)
    assert len(rows(pg_engine)) == 7
    rt.engine.dispose()
