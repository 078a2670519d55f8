"""Write-back: once a result or draft is committed, tag, move or file a draft in the mailbox.

Off unless the account turns it on. Never deletes (moves use MOVE only), never sets \\Seen, never
sends. A message that is gone from its folder, or whose folder has a new UIDVALIDITY, is noted and
left alone. Each part is recorded when done, so a redelivered task repeats nothing.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import Draft, MailAccount, Message, TriageResult
from triage.adapters.imap import FolderStatus, ImapAuthError, ImapError, ImapLogin
from triage.adapters.secrets import SecretBox
from triage.domain import statuses
from triage.domain.reply_mail import Original, reply_draft
from triage.domain.write_back import DEFAULT_DRAFTS_FOLDER, WriteBackSettings, keyword_for
from triage.pipeline.credentials import logged_in
from triage.pipeline.model_calls import StageOutcome

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
DRAFT_FLAGS = ("\\Draft", "\\Seen")  # what mail clients set on the user's own drafts
# Two tasks for one message (after triage, after the draft) must not APPEND twice; rows are
# locked on Postgres, and these stripes do the same between threads of one process.
_STRIPES = [threading.Lock() for _ in range(64)]


class WriteBackMailbox(Protocol):
    def select_writable(self, folder: str) -> FolderStatus: ...

    def has_capability(self, name: str) -> bool: ...

    def existing_uids(self, uids: Iterable[int]) -> set[int]: ...

    def add_keywords(self, uids: Iterable[int], keywords: Iterable[str]) -> None: ...

    def ensure_folder(self, folder: str) -> None: ...

    def move(self, uids: Iterable[int], folder: str) -> None: ...

    def drafts_folder(self) -> str | None: ...

    def find_message_id(self, folder: str, message_id: str) -> int | None: ...

    def append(self, folder: str, raw: bytes, flags: Iterable[str]) -> int | None: ...


WriteBackOpener = Callable[[ImapLogin], AbstractContextManager[WriteBackMailbox]]


def write_back_on(account: MailAccount) -> bool:
    """False only when the account certainly wants nothing written back (the default).

    For a stage that has the account row loaded anyway: with everything off, `write_back_wanted`
    would answer False, so its session and queries can be skipped. Settings that do not
    validate count as on, so that check runs (and reports them) as before.
    """
    try:
        settings = WriteBackSettings.model_validate(account.write_back or {})
    except ValueError:
        return True
    return settings.tags_or_moves or settings.append_drafts


def write_back_wanted(*, db: SessionFactory, message_id: int) -> bool:
    """Cheap check before enqueueing: does the account want something not yet written back?"""
    with db() as session:
        message = session.get(Message, message_id)
        if message is None:
            return False
        return _pending(session, message)


def lost_write_backs(session: Session, *, before: datetime, limit: int) -> list[int]:
    """Finished messages, untouched since `before`, of accounts that write back, with something
    still to write and no note saying it was given up or skipped: their write-back task was
    lost (a worker killed, a broker emptied). Writing back twice is harmless: each part is
    done at most once."""
    accounts = session.scalars(select(MailAccount))
    account_ids = [account.id for account in accounts if write_back_on(account)]
    if not account_ids:
        return []
    candidates = session.scalars(
        select(Message)
        .where(
            Message.account_id.in_(account_ids),
            Message.status.in_((statuses.TRIAGED, statuses.DRAFTED)),
            Message.status_changed_at < before,
            Message.write_back_note.is_(None),
        )
        .order_by(Message.id)
        .limit(limit)
    )
    return [message.id for message in candidates if _pending(session, message)]


def write_back_message(
    *,
    message_id: int,
    attempt: int = 1,
    db: SessionFactory,
    secrets: SecretBox,
    open_mailbox: WriteBackOpener,
) -> StageOutcome:
    """Keywords and moves for the stored result, then the draft APPEND; each at most once."""
    with db() as session:
        message = session.get(Message, message_id)
        if message is None or not _pending(session, message):
            return StageOutcome(status="nothing to do")
        account_id = message.account_id
    try:
        with (
            logged_in(open_mailbox, account_id=account_id, db=db, secrets=secrets) as mailbox,
            _STRIPES[message_id % len(_STRIPES)],
        ):
            with transaction(db) as session:
                _tag_and_move(session, mailbox, message_id)
            with transaction(db) as session:
                _append_draft(session, mailbox, message_id)
    except ImapAuthError as exc:  # a wrong password or a revoked token: retrying cannot help
        _note(db, message_id, f"write-back skipped: {exc}")
        return StageOutcome(status="skipped", detail=str(exc))
    except ImapError as exc:
        if attempt >= MAX_ATTEMPTS:
            _note(db, message_id, f"write-back gave up after {attempt} attempts: {exc}")
            return StageOutcome(status="failed", detail=str(exc))
        delay = min(600.0, 15.0 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
        return StageOutcome(status="retry", retry_after=delay, detail=str(exc))
    return StageOutcome(status="written back")


def _settings(session: Session, message: Message) -> tuple[MailAccount, WriteBackSettings]:
    account = session.get_one(MailAccount, message.account_id)
    return account, WriteBackSettings.model_validate(account.write_back or {})


def _pending(session: Session, message: Message) -> bool:
    _, settings = _settings(session, message)
    tags_due = settings.tags_or_moves and message.written_back_at is None
    if tags_due and _category(session, message.id) is not None:
        return True
    if settings.append_drafts:
        draft = session.scalars(select(Draft).where(Draft.message_id == message.id)).first()
        return draft is not None and draft.appended_at is None
    return False


def _category(session: Session, message_id: int) -> str | None:
    return session.scalar(
        select(TriageResult.category)
        .where(TriageResult.message_id == message_id)
        .order_by(TriageResult.id.desc())
        .limit(1)
    )


def _tag_and_move(session: Session, mailbox: WriteBackMailbox, message_id: int) -> None:
    message = session.get_one(Message, message_id, with_for_update=True)
    _, settings = _settings(session, message)
    category = _category(session, message_id)
    if message.written_back_at is not None or not settings.tags_or_moves or category is None:
        return
    notes: list[str] = []
    status = mailbox.select_writable(message.folder)
    if status.uidvalidity != message.uidvalidity:
        notes.append(f"{message.folder} has a new UIDVALIDITY; the stored UID names nothing now")
    elif message.uid not in mailbox.existing_uids([message.uid]):
        notes.append(f"the message no longer exists in {message.folder}")
    else:
        if settings.keywords:
            mailbox.add_keywords([message.uid], [keyword_for(category)])
        target = settings.moves.get(category)
        if target and target != message.folder:
            notes.append(_move(mailbox, message, target))
    message.written_back_at = datetime.now(UTC)
    message.write_back_note = "; ".join(notes) or None
    log.info("message %s written back (%s)", message_id, message.write_back_note or "tagged")


def _move(mailbox: WriteBackMailbox, message: Message, target: str) -> str:
    if not mailbox.has_capability("MOVE"):
        return f"not moved to {target}: the server does not offer MOVE (and COPY+EXPUNGE deletes)"
    mailbox.ensure_folder(target)
    mailbox.move([message.uid], target)
    return f"moved to {target}"


def _append_draft(session: Session, mailbox: WriteBackMailbox, message_id: int) -> None:
    draft = session.scalars(
        select(Draft).where(Draft.message_id == message_id).with_for_update()
    ).first()
    if draft is None or draft.appended_at is not None:
        return
    message = session.get_one(Message, message_id)
    account, settings = _settings(session, message)
    if not settings.append_drafts:
        return
    folder = account.drafts_folder or mailbox.drafts_folder() or DEFAULT_DRAFTS_FOLDER
    mailbox.ensure_folder(folder)
    draft_id = draft_message_id(draft, account)
    # A task that died after its APPEND but before this commit left the draft there: reuse it.
    uid = mailbox.find_message_id(folder, draft_id)
    if uid is None:
        raw = reply_draft(
            _original(message),
            body=draft.edited_body or draft.body,
            from_addr=_account_address(account, message),
            draft_message_id=draft_id,
            date=datetime.now(UTC),
        )
        uid = mailbox.append(folder, raw, DRAFT_FLAGS)
    draft.appended_folder, draft.appended_uid = folder, uid
    draft.appended_at = datetime.now(UTC)
    log.info("draft of message %s appended to %s", message_id, folder)


def draft_message_id(draft: Draft, account: MailAccount) -> str:
    """Stable per draft, so the Drafts folder can be searched for an earlier APPEND."""
    domain = account.username.rpartition("@")[2] if "@" in account.username else account.host
    return f"<triage-draft-{draft.id}-{draft.message_id}@{domain or 'localhost'}>"


def _original(message: Message) -> Original:
    reply_to = str((message.headers or {}).get("reply-to") or "") or message.from_addr
    return Original(
        subject=message.subject or "",
        reply_to=reply_to,
        message_id=message.message_id_header,
        references=tuple(message.references or ()),
    )


def _account_address(account: MailAccount, message: Message) -> str:
    """The account's own address: its username when that is one, else where the mail was sent."""
    if "@" in account.username:
        return account.username
    return next(iter(message.to_addrs or []), account.username)


def _note(db: SessionFactory, message_id: int, note: str) -> None:
    log.warning("message %s: %s", message_id, note)
    with transaction(db) as session:
        message = session.get(Message, message_id)
        if message is not None:
            message.write_back_note = note[:1000]
