"""Images through Dovecot and a sync: a sender's repeated logo is not sent to the model again."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from tests.conftest import ImapUser
from tests.integration.ingest_support import runtime_from, seed_account, sync_once
from tests.support.dovecot import Dovecot
from tests.unit.test_images import diagram, photo
from triage.adapters.db.tables import Message

LOGO = diagram(320, 120)
REPEATED = "seen recently from this sender (logo)"


def newsletter(sender: str, subject: str, picture: bytes) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "owner@example.test", subject
    message.set_content("This week's news, with a chart.")
    message.add_attachment(LOGO, maintype="image", subtype="png", filename="logo.png")
    message.add_attachment(picture, maintype="image", subtype="png", filename="chart.png")
    return message.as_bytes().replace(b"\n", b"\r\n")


def images_by_subject(engine: Engine) -> dict[str, list[tuple[str | None, bool, str | None]]]:
    with Session(engine) as session:
        messages = session.scalars(
            select(Message).options(selectinload(Message.attachments)).order_by(Message.uid)
        )
        return {
            m.subject: [(a.filename, a.for_model, a.skip_reason) for a in m.attachments]
            for m in messages
        }


def test_a_logo_repeated_by_a_sender_is_kept_once_in_stored_mail_and_within_a_batch(
    dovecot: Dovecot, imap_user: ImapUser, service_env: dict[str, str], pg_engine: Engine
) -> None:
    account_id = seed_account(service_env, imap_user)
    rt = runtime_from(service_env)
    news = "News <news@example.test>"

    def append(raw: bytes) -> None:
        dovecot.append(imap_user.username, imap_user.password, "INBOX", raw)

    append(newsletter(news, "week 1", photo(640, 480, "PNG")))
    assert sync_once(rt, account_id).stored == 1
    append(newsletter(news, "week 2", photo(700, 500, "PNG")))  # the logo is in stored mail
    append(newsletter(news, "week 3", photo(720, 540, "PNG")))
    append(newsletter("Other <other@example.test>", "other", photo(660, 500, "PNG")))
    bulletin = "Bulletin <bulletin@example.test>"  # new: both in the same batch
    append(newsletter(bulletin, "bulletin 1", photo(600, 400, "PNG")))
    append(newsletter(bulletin, "bulletin 2", photo(610, 410, "PNG")))
    assert sync_once(rt, account_id).stored == 5
    rt.engine.dispose()

    kept = [("logo.png", True, None), ("chart.png", True, None)]
    repeated = [("logo.png", False, REPEATED), ("chart.png", True, None)]
    assert images_by_subject(pg_engine) == {
        "week 1": kept,
        "week 2": repeated,
        "week 3": repeated,
        "other": kept,  # the same bytes from someone else: not their logo
        "bulletin 1": kept,
        "bulletin 2": repeated,
    }
