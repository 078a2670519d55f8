"""Response and request bodies of the JSON API (the OpenAPI description is built from them)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from triage.web.html_body import sanitize
from triage.web.queries.detail import MessageDetail


class Me(BaseModel):
    id: int
    email: str
    is_admin: bool
    csrf_token: str = Field(description="send as X-CSRF-Token on every API write")


class _Rows(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ActionItemOut(_Rows):
    id: int
    text: str
    owner: str
    due_date: date | None
    quote: str | None
    status: str


class ReviewOut(_Rows):
    id: int
    result_id: int
    reviewer_id: int
    from_category: str
    to_category: str
    note: str | None
    created_at: datetime | None


class ResultOut(_Rows):
    id: int
    prompt_version: str
    category: str
    priority: str
    confidence: float
    summary: str
    needs_reply: bool
    injection_suspected: bool
    fallback_disagreed: bool
    flags: list[str]
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    latency_ms: int
    created_at: datetime | None
    action_items: list[ActionItemOut] = []
    reviews: list[ReviewOut] = []


class DraftOut(_Rows):
    id: int
    message_id: int
    body: str = Field(description="the model's text, as written")
    edited_body: str | None = Field(description="the reviewer's edit, when there is one")
    status: str
    provider: str
    model: str
    decided_by: int | None
    decided_at: datetime | None


class AttachmentOut(BaseModel):
    id: int
    filename: str | None
    declared_type: str
    sniffed_type: str | None
    size: int
    for_model: bool
    skip_reason: str | None
    image_url: str | None


class RerunOut(_Rows):
    id: int
    setting_id: int | None
    status: str
    result_id: int | None
    error: str | None
    created_at: datetime | None
    finished_at: datetime | None


class MessageOut(BaseModel):
    id: int
    account_id: int
    owner: str
    folder: str
    uid: int
    message_id_header: str | None
    subject: str
    from_addr: str
    to_addrs: list[str]
    cc_addrs: list[str]
    sent_at: datetime | None
    status: str
    error: str | None
    headers: dict[str, Any]
    text_body: str
    html_sanitized: str | None = Field(description="the HTML part after the allow-list sanitizer")
    attachments: list[AttachmentOut]
    results: list[ResultOut] = Field(description="newest first; the first is the current one")
    draft: DraftOut | None
    reruns: list[RerunOut]

    @classmethod
    def of(cls, d: MessageDetail) -> MessageOut:
        m = d.message
        results = []
        for view in d.results:
            out = ResultOut.model_validate(view.result)
            out.action_items = [ActionItemOut.model_validate(item) for item in view.items]
            out.reviews = [ReviewOut.model_validate(review) for review, _ in view.reviews]
            results.append(out)
        return cls(
            id=m.id,
            account_id=m.account_id,
            owner=d.owner.email,
            folder=m.folder,
            uid=m.uid,
            message_id_header=m.message_id_header,
            subject=m.subject,
            from_addr=m.from_addr,
            to_addrs=list(m.to_addrs or []),
            cc_addrs=list(m.cc_addrs or []),
            sent_at=m.sent_at,
            status=m.status,
            error=m.error,
            headers=dict(m.headers or {}),
            text_body=m.text_body,
            html_sanitized=sanitize(m.html_body) if m.html_body else None,
            attachments=[
                AttachmentOut(
                    **{k: getattr(a, k) for k in AttachmentOut.model_fields if k != "image_url"},
                    image_url=f"/attachments/{a.id}/image" if a.has_thumbnail else None,
                )
                for a in d.attachments
            ],
            results=results,
            draft=DraftOut.model_validate(d.draft) if d.draft else None,
            reruns=[RerunOut.model_validate(r) for r in d.reruns],
        )


class ReviewIn(BaseModel):
    to_category: str | None = Field(default=None, description="omit or null to confirm")
    note: str | None = Field(default=None, max_length=2000)


class DraftIn(BaseModel):
    action: Literal["approve", "save", "discard"]
    body: str | None = Field(default=None, max_length=200_000)


class ItemIn(BaseModel):
    status: Literal["open", "done"]


class RerunIn(BaseModel):
    setting_id: int | None = Field(default=None, description="one of the owner's classify models")


class Queued(BaseModel):
    message_id: int
    rerun_id: int | None = None


class KeyIn(BaseModel):
    api_key: str = Field(min_length=1, max_length=4096)


class BudgetIn(BaseModel):
    monthly_usd: str | None = Field(default=None, description="USD; null or blank clears it")
