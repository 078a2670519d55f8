"""The owner's writing style, learned from a sample of their sent mail with one model call."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import MailAccount, User
from triage.adapters.imap import ImapError, ImapLogin, ImapMailbox
from triage.adapters.secrets import SecretBox
from triage.domain.drafts import own_words
from triage.domain.email import EmailParseError, parse_email
from triage.domain.prompts import new_boundary, style_messages
from triage.domain.schemas import StyleAnswer, strict_json_schema
from triage.pipeline.budget import over_budget_reason
from triage.pipeline.credentials import logged_in
from triage.pipeline.model_calls import provider_configs, record_usage
from triage.pipeline.ports import ModelPort, ProviderConfig, ProviderError

TASK = "draft"  # the profile serves drafts, so the draft model writes it
MIN_WORDS = 5  # a sent "ok" or "thanks" says nothing about style
SAMPLE_CHARS = 1500
STYLE_PROMPT_CHARS = 12_000

MailboxOpener = Callable[[ImapLogin], AbstractContextManager[ImapMailbox]]


class StyleError(Exception):
    """Why no profile could be built, in words for the person at the command line."""


@dataclass(frozen=True)
class StyleReport:
    samples: int
    profile: str


def learn_style(
    *,
    user_id: int,
    account_id: int,
    db: SessionFactory,
    model: ModelPort,
    secrets: SecretBox,
    open_mailbox: MailboxOpener,
    folder: str | None = None,
    count: int = 20,
) -> StyleReport:
    """Read the newest `count` sent messages (BODY.PEEK[]), keep the owner's own words,
    ask the user's draft model for a short profile and store it on the user."""
    folder, config = _prepare(db, user_id, account_id, folder, secrets)
    raws = _fetch_sent(open_mailbox, db, secrets, account_id=account_id, folder=folder, count=count)
    samples = _own_samples(raws)
    if not samples:
        raise StyleError(f"no message in {folder} has enough of the owner's own words")
    try:
        reply = model.ask(
            config,
            messages=style_messages(samples, boundary=new_boundary(), max_chars=STYLE_PROMPT_CHARS),
            answer_type=StyleAnswer,
            schema_name="style",
            json_schema=strict_json_schema(StyleAnswer),
        )
    except ProviderError as exc:
        _bill(db, user_id, config, exc, outcome=type(exc).__name__)
        raise StyleError(f"the model call failed: {exc.reason}") from None
    profile = " ".join(reply.answer.profile.split())
    with transaction(db) as session:
        record_usage(
            session,
            user_id=user_id,
            message_id=None,
            task="style",
            config=config,
            usage=reply.usage,
            outcome="ok",
        )
        session.get_one(User, user_id).style_profile = profile
    return StyleReport(samples=len(samples), profile=profile)


def _prepare(
    db: SessionFactory, user_id: int, account_id: int, folder: str | None, secrets: SecretBox
) -> tuple[str, ProviderConfig]:
    with db() as session:
        account = session.get(MailAccount, account_id)
        if account is None or account.user_id != user_id:
            raise StyleError(f"account {account_id} is not one of this user's accounts")
        folder = folder or account.sent_folder
        if not folder:
            raise StyleError("the account has no Sent folder configured; pass --folder NAME")
        reason = over_budget_reason(session, user_id=user_id)
        if reason is not None:
            raise StyleError(reason)
        configs = provider_configs(session, user_id=user_id, task=TASK, secrets=secrets)
        if not configs:
            raise StyleError("no valid model is configured for this user (triage providers set)")
        return folder, configs[0]


def _fetch_sent(
    open_mailbox: MailboxOpener,
    db: SessionFactory,
    secrets: SecretBox,
    *,
    account_id: int,
    folder: str,
    count: int,
) -> list[bytes]:
    try:
        with logged_in(open_mailbox, account_id=account_id, db=db, secrets=secrets) as mailbox:
            mailbox.select(folder)
            newest = mailbox.uids_from(1)[-count:]
            bodies = mailbox.bodies(newest)
    except ImapError as exc:
        raise StyleError(f"cannot read {folder}: {exc}") from None
    return [bodies[uid] for uid in newest if bodies.get(uid)]


def _own_samples(raws: list[bytes]) -> list[str]:
    samples: list[str] = []
    for raw in raws:
        try:
            text = own_words(parse_email(raw).text)
        except EmailParseError:
            continue
        if len(text.split()) >= MIN_WORDS:
            samples.append(text[:SAMPLE_CHARS])
    return samples


def _bill(
    db: SessionFactory, user_id: int, config: ProviderConfig, exc: ProviderError, *, outcome: str
) -> None:
    with transaction(db) as session:
        record_usage(
            session,
            user_id=user_id,
            message_id=None,
            task="style",
            config=config,
            usage=exc.usage,
            outcome=outcome,
        )
