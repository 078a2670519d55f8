"""Hostile mail through Dovecot, sync and a real worker: each ends with a status and a reason."""

from __future__ import annotations

import struct
import zlib
from email.message import EmailMessage

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload, undefer

from tests.conftest import ImapUser
from tests.integration.conftest import Cli, Worker, wait_until
from tests.integration.ingest_support import mail, seed_account, set_provider
from tests.support.dovecot import Dovecot
from tests.support.model_server import FakeModelServer
from tests.support.triage_responder import triage_and_draft
from triage.adapters.db.tables import Message
from triage.domain import statuses

CAP = 6 * 1024 * 1024
HEADERS = b"From: Mallory <mallory@example.test>\r\nTo: owner@example.test\r\n"


def oversized() -> bytes:
    line = b"z" * 998 + b"\r\n"
    return HEADERS + b"Subject: oversized\r\n\r\n" + line * (CAP // len(line) + 500)


def png_bomb(side: int = 30_000) -> bytes:
    """A valid PNG header for side x side pixels whose zeros compress to about 100 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    row = b"\0" * (1 + side // 8)  # filter byte + one bit per pixel
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def image_bomb() -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "m@example.test", "o@example.test", "bomb"
    message.set_content("See the picture, please?")
    message.add_attachment(png_bomb(), maintype="image", subtype="png", filename="look.png")
    return message.as_bytes()


def ten_thousand_parts() -> bytes:
    parts = b"".join(
        b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % n for n in range(10_000)
    )
    return (
        HEADERS + b"Subject: ten thousand parts\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    )


def long_header_line() -> bytes:
    return (
        HEADERS + b"Subject: long header\r\nX-Junk: " + b"a" * (5 * 1024 * 1024) + b"\r\n\r\nHi\r\n"
    )


def broken_boundaries() -> bytes:
    return (
        HEADERS + b"Subject: broken boundaries\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="declared"\r\n\r\n'
        b"--other\r\nContent-Type: text/plain\r\n\r\nIs this readable?\r\n"
        b"--declared\r\nContent-Type: text/html\r\n\r\n<p>never closed"
    )


HOSTILE = {
    "oversized": oversized,
    "bomb": image_bomb,
    "ten thousand parts": ten_thousand_parts,
    "long header": long_header_line,
    "broken boundaries": broken_boundaries,
}


def finished(engine: Engine) -> bool:
    with Session(engine) as session:
        return not session.scalars(
            select(Message.id).where(Message.status.in_(statuses.UNFINISHED))
        ).first()


def by_name(engine: Engine) -> dict[str, Message]:
    """Rows by the name of what was appended, in APPEND (UID) order."""
    names = [*HOSTILE, "ordinary, after", "ordinary, later"]
    with Session(engine) as session:
        loads = (selectinload(Message.attachments), undefer(Message.raw))
        query = select(Message).options(*loads).order_by(Message.uid)
        return dict(zip(names, session.scalars(query), strict=False))


def test_hostile_mail_ends_with_reasons_and_the_worker_keeps_working(
    dovecot: Dovecot,
    imap_user: ImapUser,
    cli: Cli,
    pg_engine: Engine,
    model_server: FakeModelServer,
    worker: Worker,
) -> None:
    model_server.responder = triage_and_draft
    for build in HOSTILE.values():
        dovecot.append(imap_user.username, imap_user.password, "INBOX", build())
    dovecot.append(imap_user.username, imap_user.password, "INBOX", mail("ordinary, after"))
    cli.env["TRIAGE_MAX_MESSAGE_BYTES"] = str(CAP)
    seed_account(cli.env, imap_user)
    set_provider(cli, model_server.base_url)
    pid = worker.process.pid

    cli("sync", "--once")
    wait_until(lambda: finished(pg_engine), timeout=240, what="every message to finish")

    rows = by_name(pg_engine)
    assert len(rows) == len(HOSTILE) + 1, "a message was lost"
    assert [row.subject for row in rows.values()] == list(rows)  # too large: headers only
    for name, row in rows.items():
        assert row.status in statuses.FINISHED, (name, row.status)
        if row.status in (statuses.FAILED, statuses.TOO_LARGE, statuses.SKIPPED):
            assert row.error, f"{name} is {row.status} without a reason"
    assert rows["oversized"].status == statuses.TOO_LARGE and rows["oversized"].raw is None
    (bomb,) = [a for a in rows["bomb"].attachments if a.sniffed_type == "image/png"]
    assert not bomb.for_model and bomb.skip_reason and "bomb" in bomb.skip_reason
    assert any("parts" in defect for defect in rows["ten thousand parts"].defects)
    assert rows["broken boundaries"].defects, "the broken structure left no trace"
    ordinary = rows["ordinary, after"]
    assert ordinary.status in (statuses.TRIAGED, statuses.DRAFTED), ordinary.error

    # The same worker process is alive and still does its job.
    assert worker.process.poll() is None and worker.process.pid == pid
    dovecot.append(imap_user.username, imap_user.password, "INBOX", mail("ordinary, later"))
    cli("sync", "--once")
    wait_until(lambda: finished(pg_engine), timeout=60, what="the later message")
    assert by_name(pg_engine)["ordinary, later"].status in (statuses.TRIAGED, statuses.DRAFTED)
