"""Earlier stored messages of the same conversation, to show the model as context."""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import MailAccount, Message
from triage.domain.prompts import EarlierMessage

MAX_EARLIER = 5


def earlier_in_thread(
    session: Session, message: Message, *, limit: int = MAX_EARLIER
) -> tuple[EarlierMessage, ...]:
    """The newest `limit` messages of the owner's mail in this thread that came before it.

    A thread is the thread key (its root Message-ID), or any message this one names in
    References / In-Reply-To; only the same user's accounts are searched.
    """
    named = [ref for ref in [*(message.references or []), message.in_reply_to] if ref]
    same_thread = [Message.thread_key == message.thread_key] if message.thread_key else []
    if named:
        same_thread.append(Message.message_id_header.in_(named[-50:]))
    if not same_thread:
        return ()
    owner = select(MailAccount.user_id).where(MailAccount.id == message.account_id)
    accounts = select(MailAccount.id).where(MailAccount.user_id == owner.scalar_subquery())
    # Columns only: a whole row would drag its raw bytes along.
    query = select(Message.from_addr, Message.sent_at, Message.text_body).where(
        Message.account_id.in_(accounts),
        Message.id != message.id,
        or_(*same_thread),
    )
    if message.sent_at is not None:
        undated_before = and_(Message.sent_at.is_(None), Message.id < message.id)
        query = query.where(or_(Message.sent_at < message.sent_at, undated_before))
    else:
        query = query.where(Message.id < message.id)
    query = query.order_by(Message.sent_at.desc().nulls_last(), Message.id.desc()).limit(limit)
    return tuple(
        EarlierMessage(from_addr=row.from_addr, date=row.sent_at, text=row.text_body)
        for row in session.execute(query)
        if row.text_body
    )
