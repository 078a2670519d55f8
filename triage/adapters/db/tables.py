"""SQLAlchemy 2.0 table models: the database is the truth about every message and result."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON,
        list[str]: JSON,
        list[dict[str, Any]]: JSON,
    }


def _now_column() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    style_note: Mapped[str | None] = mapped_column(Text)
    style_profile: Mapped[str | None] = mapped_column(Text)  # learned from the user's sent mail
    categories: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # None: the defaults
    screening: Mapped[dict[str, Any]] = mapped_column(default=dict)  # rule -> skip|cheap|model
    created_at: Mapped[datetime] = _now_column()


class MailAccount(Base):
    __tablename__ = "mail_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(16))  # ssl | starttls | plain
    username: Mapped[str] = mapped_column(String(320))
    password_enc: Mapped[str | None] = mapped_column(Text)
    folders: Mapped[list[str]] = mapped_column(default=list)
    auth_method: Mapped[str] = mapped_column(String(16), default="password")  # password | oauth2
    oauth: Mapped[dict[str, Any]] = mapped_column(default=dict)  # token URL, client id, scopes
    oauth_refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    oauth_access_token_enc: Mapped[str | None] = mapped_column(Text)
    oauth_access_expires_at: Mapped[datetime | None]
    sent_folder: Mapped[str | None] = mapped_column(String(512))
    drafts_folder: Mapped[str | None] = mapped_column(String(512))
    write_back: Mapped[dict[str, Any]] = mapped_column(default=dict)  # keywords, moves, drafts
    sync_lease_owner: Mapped[str | None] = mapped_column(String(128))
    sync_lease_until: Mapped[datetime | None]
    expected_interval_seconds: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default="new")
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _now_column()

    user: Mapped[User] = relationship()


class FolderState(Base):
    """Progress of one folder: its UIDVALIDITY and the highest UID stored so far."""

    __tablename__ = "folder_states"
    __table_args__ = (UniqueConstraint("account_id", "folder"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("mail_accounts.id", ondelete="CASCADE"))
    folder: Mapped[str] = mapped_column(String(512))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    high_water_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    remaining: Mapped[int] = mapped_column(Integer, default=0)  # left by a limited first sync
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("account_id", "folder", "uidvalidity", "uid", name="uq_message_identity"),
        Index("ix_messages_account_raw_sha256", "account_id", "raw_sha256"),
        Index("ix_messages_status_changed", "status", "status_changed_at"),
        # The console lists newest first by ID, per account, per status and by date.
        Index("ix_messages_account_id", "account_id", "id"),
        Index("ix_messages_status_id", "status", "id"),
        Index("ix_messages_sent_at", "sent_at"),
        # Text in subject or sender (ILIKE '%…%'): trigrams on Postgres, a plain index elsewhere.
        Index(
            "ix_messages_search_trgm",
            "subject",
            "from_addr",
            postgresql_using="gin",
            postgresql_ops={"subject": "gin_trgm_ops", "from_addr": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("mail_accounts.id", ondelete="CASCADE"))
    folder: Mapped[str] = mapped_column(String(512))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id_header: Mapped[str | None] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[str]] = mapped_column(default=list)
    thread_key: Mapped[str | None] = mapped_column(String(998), index=True)
    from_addr: Mapped[str] = mapped_column(Text, default="")
    to_addrs: Mapped[list[str]] = mapped_column(default=list)
    cc_addrs: Mapped[list[str]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None]
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    defects: Mapped[list[str]] = mapped_column(default=list)
    # Loaded only when read: stages and pages never need the raw bytes, which can be megabytes.
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(32), default="received")
    error: Mapped[str | None] = mapped_column(Text)
    screening_rule: Mapped[str | None] = mapped_column(String(64))
    written_back_at: Mapped[datetime | None]
    write_back_note: Mapped[str | None] = mapped_column(Text)  # what write-back skipped, and why
    status_changed_at: Mapped[datetime] = _now_column()
    created_at: Mapped[datetime] = _now_column()

    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", cascade="all, delete-orphan", order_by="Attachment.id"
    )


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str | None] = mapped_column(Text)
    declared_type: Mapped[str] = mapped_column(String(255))
    sniffed_type: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_id: Mapped[str | None] = mapped_column(Text)
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    for_model: Mapped[bool] = mapped_column(Boolean, default=False)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    normalized: Mapped[bytes | None] = mapped_column(LargeBinary)
    normalized_type: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)

    message: Mapped[Message] = relationship(back_populates="attachments")


class ProviderSetting(Base):
    """One of a user's model settings for a task; position orders the fallbacks (0 = primary)."""

    __tablename__ = "provider_settings"
    __table_args__ = (UniqueConstraint("user_id", "task", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(16))  # classify | draft
    position: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str] = mapped_column(String(64))
    base_url: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(255))
    api_key_enc: Mapped[str | None] = mapped_column(Text)
    key_last4: Mapped[str | None] = mapped_column(String(4))
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    invalid_reason: Mapped[str | None] = mapped_column(Text)
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    probe_report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    probed_at: Mapped[datetime | None]
    price_override: Mapped[str | None] = mapped_column(String(64))  # "in/out" USD per 1M tokens
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now_column()


class TriageResult(Base):
    __tablename__ = "triage_results"
    __table_args__ = (
        UniqueConstraint("message_id", "prompt_version", name="uq_result_version"),
        # A message's current result is its newest: (message_id, id) finds it by index.
        Index("ix_results_message_newest", "message_id", "id"),
        Index("ix_results_confidence", "confidence"),
        Index("ix_results_model", "provider", "model"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    prompt_version: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64), index=True)
    priority: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(Text)
    needs_reply: Mapped[bool] = mapped_column(Boolean)
    injection_suspected: Mapped[bool] = mapped_column(Boolean, default=False)
    images_sent: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 8))
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    model_calls: Mapped[int] = mapped_column(Integer, default=1)
    screening_rule: Mapped[str | None] = mapped_column(String(64))
    flags: Mapped[list[str]] = mapped_column(default=list)  # e.g. links, ai_instructions
    fallback_disagreed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _now_column()

    action_items: Mapped[list[ActionItem]] = relationship(
        cascade="all, delete-orphan", order_by="ActionItem.id"
    )


class ActionItem(Base):
    __tablename__ = "action_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(
        ForeignKey("triage_results.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(16))  # me | sender | other
    due_date: Mapped[date | None] = mapped_column(Date)
    quote: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")


class Draft(Base):
    __tablename__ = "drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    prompt_version: Mapped[str] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 8))
    flags: Mapped[list[str]] = mapped_column(default=list)  # e.g. link_removed
    # A reviewer's decision; `body` stays the model's text, the edit is kept beside it.
    edited_body: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    # Set once the draft is APPENDed to the account's Drafts folder (never sent).
    appended_folder: Mapped[str | None] = mapped_column(String(512))
    appended_uid: Mapped[int | None] = mapped_column(BigInteger)
    appended_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now_column()


class Review(Base):
    """A reviewer's correction, kept beside the model's answer, never overwriting it."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(
        ForeignKey("triage_results.id", ondelete="CASCADE"), index=True
    )
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    from_category: Mapped[str] = mapped_column(String(64))
    to_category: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_column()


class UsageEntry(Base):
    """One billed model call: the ledger a user's monthly budget is checked against."""

    __tablename__ = "usage_ledger"
    __table_args__ = (Index("ix_usage_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    task: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 8))
    outcome: Mapped[str] = mapped_column(String(32), default="ok")
    created_at: Mapped[datetime] = _now_column()


class ConsoleSession(Base):
    """A signed-in console session; the cookie carries the token, the table only its hash."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = _now_column()


class SigninAttempt(Base):
    """One console sign-in attempt, kept for a while to throttle password guessing."""

    __tablename__ = "signin_attempts"
    __table_args__ = (
        Index("ix_signin_email_created", "email", "created_at"),
        Index("ix_signin_ip_created", "ip", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))  # lower-cased as typed
    ip: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _now_column()


class RerunRequest(Base):
    """A console request to triage a message again, maybe with another of the owner's models."""

    __tablename__ = "rerun_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    setting_id: Mapped[int | None] = mapped_column(
        ForeignKey("provider_settings.id", ondelete="SET NULL")
    )
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|done|failed
    result_id: Mapped[int | None] = mapped_column(
        ForeignKey("triage_results.id", ondelete="SET NULL")
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_column()
    finished_at: Mapped[datetime | None]
