"""Everything the message page shows: headers, bodies, images, results, reviews, the draft."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import (
    ActionItem,
    Attachment,
    Draft,
    MailAccount,
    Message,
    ProviderSetting,
    RerunRequest,
    Review,
    TriageResult,
    User,
)
from triage.domain.schemas import Category
from triage.web.queries.scope import categories_of, visible_message
from triage.web.sessions import Viewer


@dataclass(frozen=True)
class AttachmentInfo:
    id: int
    filename: str | None
    declared_type: str
    sniffed_type: str | None
    size: int
    for_model: bool
    skip_reason: str | None
    has_thumbnail: bool
    width: int | None
    height: int | None


@dataclass
class ResultView:
    result: TriageResult
    items: list[ActionItem] = field(default_factory=list)
    reviews: list[tuple[Review, str]] = field(default_factory=list)  # with the reviewer email

    @property
    def effective_category(self) -> str:
        return self.reviews[-1][0].to_category if self.reviews else self.result.category


@dataclass
class MessageDetail:
    message: Message
    account: MailAccount
    owner: User
    attachments: list[AttachmentInfo]
    results: list[ResultView]  # newest first; the first is the current one
    draft: Draft | None
    settings: list[ProviderSetting]  # the owner's classify models, for a re-run
    reruns: list[RerunRequest]
    categories: tuple[Category, ...]

    @property
    def current(self) -> ResultView | None:
        return self.results[0] if self.results else None


def message_detail(session: Session, viewer: Viewer, message_id: int) -> MessageDetail | None:
    message = visible_message(session, viewer, message_id)
    if message is None:
        return None
    account = session.get_one(MailAccount, message.account_id)
    owner = session.get_one(User, account.user_id)
    return MessageDetail(
        message=message,
        account=account,
        owner=owner,
        attachments=_attachments(session, message_id),
        results=_results(session, message_id),
        draft=session.scalars(select(Draft).where(Draft.message_id == message_id)).first(),
        settings=list(
            session.scalars(
                select(ProviderSetting)
                .where(ProviderSetting.user_id == owner.id, ProviderSetting.task == "classify")
                .order_by(ProviderSetting.position)
            )
        ),
        reruns=list(
            session.scalars(
                select(RerunRequest)
                .where(RerunRequest.message_id == message_id)
                .order_by(RerunRequest.id.desc())
            )
        ),
        categories=categories_of(owner),
    )


def _attachments(session: Session, message_id: int) -> list[AttachmentInfo]:
    # Columns only: the image bytes are served by their own route, one at a time.
    rows = session.execute(
        select(
            Attachment.id,
            Attachment.filename,
            Attachment.declared_type,
            Attachment.sniffed_type,
            Attachment.size,
            Attachment.for_model,
            Attachment.skip_reason,
            Attachment.normalized_type.is_not(None).label("has_thumbnail"),
            Attachment.width,
            Attachment.height,
        )
        .where(Attachment.message_id == message_id)
        .order_by(Attachment.id)
    )
    return [AttachmentInfo(**row._mapping) for row in rows]


def _results(session: Session, message_id: int) -> list[ResultView]:
    results = list(
        session.scalars(
            select(TriageResult)
            .where(TriageResult.message_id == message_id)
            .order_by(TriageResult.id.desc())
        )
    )
    views = {result.id: ResultView(result) for result in results}
    for item in session.scalars(
        select(ActionItem).where(ActionItem.message_id == message_id).order_by(ActionItem.id)
    ):
        if item.result_id in views:
            views[item.result_id].items.append(item)
    grouped: dict[int, list[tuple[Review, str]]] = defaultdict(list)
    for review, email in session.execute(
        select(Review, User.email)
        .join(User, User.id == Review.reviewer_id)
        .where(Review.result_id.in_(views))
        .order_by(Review.id)
    ).tuples():
        grouped[review.result_id].append((review, email))
    for result_id, reviews in grouped.items():
        views[result_id].reviews = reviews
    return [views[result.id] for result in results]
