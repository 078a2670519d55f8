"""`triage estimate`: what triaging a folder's old mail would cost, before anything is triaged."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from sqlalchemy import select

from triage.adapters.db.tables import MailAccount, ProviderSetting, User
from triage.adapters.imap import ImapError
from triage.adapters.models.prices import call_cost, parse_override
from triage.commands.setup import CommandError
from triage.domain.email import EmailParseError, ParsedEmail, parse_email
from triage.domain.images import ImageCandidate, estimate_image_tokens, select_images
from triage.domain.prompts import PromptEmail, estimate_tokens, new_boundary, triage_messages
from triage.domain.schemas import TriageAnswer, parse_categories, strict_json_schema
from triage.domain.screening import action_for, screen
from triage.pipeline.credentials import logged_in
from triage.runtime import Runtime, mailbox_opener

# A classification answer (JSON with a summary and an action item or two) is about this long.
OUTPUT_TOKENS = 150
REFERENCES = (("openai", "gpt-4o-mini"), ("deepseek", "deepseek-chat"))


@dataclass
class Sample:
    """Token estimates over the sampled messages, split by the path screening sends them on."""

    messages: int = 0
    input_tokens: Counter[str] = field(default_factory=Counter)  # by action: model, cheap
    image_tokens: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Pricing:
    provider: str
    model: str
    override: tuple[Decimal, Decimal] | None = None

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal | None:
        return call_cost(
            provider=self.provider,
            model=self.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            override=self.override,
        )


def estimate(rt: Runtime, args: argparse.Namespace) -> str:
    """Count the mail since DATE, sample it, and price the classification calls it would take."""
    since = _since(args.since)
    user, folders, prices = _account(rt, args.account)
    total, too_large, raws = _fetch_sample(rt, args.account, folders, since, args.sample)
    sample = _measure(raws, user, rt)
    return _report(args, since, folders, total, too_large, sample, prices)


def _since(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since {value!r} is not a date like 2026-01-31") from None


def _account(rt: Runtime, account_id: int) -> tuple[User, list[str], dict[str, Pricing]]:
    with rt.db() as session:
        account = session.get(MailAccount, account_id)
        if account is None:
            raise CommandError(f"no account {account_id}")
        user = session.get_one(User, account.user_id)
        session.expunge(user)
        rows = session.scalars(
            select(ProviderSetting)
            .where(ProviderSetting.user_id == user.id, ProviderSetting.position == 0)
            .where(ProviderSetting.task.in_(("classify", "cheap")))
        ).all()
        prices = {
            row.task: Pricing(row.provider, row.model, parse_override(row.price_override))
            for row in rows
        }
        return user, list(account.folders or ["INBOX"]), prices


def _fetch_sample(
    rt: Runtime, account_id: int, folders: list[str], since: date, size: int
) -> tuple[int, int, list[bytes]]:
    """SEARCH SINCE and RFC822.SIZE for every folder, BODY.PEEK[] for an even sample only."""
    total, too_large, raws = 0, 0, []
    per_folder = max(1, size // len(folders))
    try:
        opener = mailbox_opener(rt)
        with logged_in(opener, account_id=account_id, db=rt.db, secrets=rt.secrets) as mailbox:
            for folder in folders:
                mailbox.select(folder)
                sizes = mailbox.sizes(mailbox.uids_from(1, since=since))
                cap = rt.settings.max_message_bytes
                fits = [uid for uid, n in sorted(sizes.items()) if n <= cap]
                total, too_large = total + len(fits), too_large + len(sizes) - len(fits)
                raws += [raw for raw in mailbox.bodies(_spread(fits, per_folder)).values() if raw]
    except ImapError as exc:
        raise CommandError(f"cannot read the mailbox: {exc}") from None
    return total, too_large, raws


def _spread(uids: list[int], count: int) -> list[int]:
    """`count` UIDs spread evenly over the list, so old and new mail are both sampled."""
    if len(uids) <= count:
        return uids
    return [uids[i * len(uids) // count] for i in range(count)]


def _measure(raws: list[bytes], user: User, rt: Runtime) -> Sample:
    sample = Sample()
    categories = parse_categories(user.categories)
    schema = json.dumps(strict_json_schema(TriageAnswer, categories), separators=(",", ":"))
    for raw in raws:
        try:
            parsed = parse_email(raw)
        except EmailParseError:
            continue
        sample.messages += 1
        screened = screen(parsed)
        action = action_for(screened.rule, user.screening) if screened else "model"
        sample.actions[action] += 1
        if screened:
            sample.rules[screened.rule] += 1
        if action == "skip":
            continue
        messages = triage_messages(
            _prompt_email(parsed),
            categories=categories,
            max_chars=rt.settings.prompt_max_chars,
            boundary=new_boundary(),
        )
        text = "".join(str(m["content"]) for m in messages) + schema
        images = _image_tokens(parsed, rt)
        sample.input_tokens[action] += estimate_tokens(text) + images
        sample.image_tokens += images
    return sample


def _prompt_email(parsed: ParsedEmail) -> PromptEmail:
    return PromptEmail(
        subject=parsed.subject,
        from_addr=parsed.from_addr,
        to_addrs=parsed.to_addrs,
        date=parsed.date,
        text=parsed.text,
        attachment_names=tuple(a.filename for a in parsed.attachments if a.filename)[:20],
    )


def _image_tokens(parsed: ParsedEmail, rt: Runtime) -> int:
    """High-detail tokens of the images that would be sent, after the size and count caps."""
    candidates = [
        ImageCandidate(
            data=a.data,
            sha256=a.sha256,
            declared_type=a.declared_type,
            content_id=a.content_id,
            inline=a.inline,
            filename=a.filename,
        )
        for a in parsed.attachments
        if a.sniffed_type and a.sniffed_type.startswith("image/")
    ]
    kept, _ = select_images(
        candidates,
        max_side=rt.settings.image_max_side,
        min_side=rt.settings.image_min_side,
        cap=rt.settings.images_per_message,
    )
    return sum(estimate_image_tokens(image.width, image.height) for image in kept)


def _report(
    args: argparse.Namespace,
    since: date,
    folders: list[str],
    total: int,
    too_large: int,
    sample: Sample,
    prices: dict[str, Pricing],
) -> str:
    scale = total / sample.messages if sample.messages else 0.0
    per_action = {a: int(n * scale) for a, n in sample.input_tokens.items()}
    calls = {a: int(sample.actions[a] * scale) for a in ("model", "cheap")}
    output = {a: calls[a] * OUTPUT_TOKENS for a in calls}
    input_total, output_total = sum(per_action.values()), sum(output.values())
    lines = [
        f"account {args.account} ({', '.join(folders)}) since {since}: {total} messages"
        + (f", {too_large} over the size cap (not fetched, no cost)" if too_large else ""),
        f"sampled {sample.messages} (bodies read with BODY.PEEK[], nothing stored or triaged)",
        "screening of the sample: "
        + (", ".join(f"{a} {n}" for a, n in sorted(sample.actions.items())) or "nothing")
        + (f" (rules: {dict(sorted(sample.rules.items()))})" if sample.rules else ""),
        f"estimated tokens: input {input_total:,} (images {int(sample.image_tokens * scale):,}),"
        f" output {output_total:,}; model calls {sum(calls.values()):,}",
        "estimated cost of classification:",
    ]
    own = prices.get("classify")
    if own is not None:
        cheap = prices.get("cheap", own)
        parts = [
            own.cost(per_action.get("model", 0), output["model"]),
            cheap.cost(per_action.get("cheap", 0), output["cheap"]),
        ]
        known = None if None in parts else sum((p for p in parts if p), Decimal(0))
        lines.append(f"  your model {own.provider}/{own.model}: {_usd(known)}")
    else:
        lines.append("  your model: none configured (triage providers set)")
    for provider, model in REFERENCES:
        cost = Pricing(provider, model).cost(input_total, output_total)
        lines.append(f"  at {model} prices: {_usd(cost)}")
    lines.append("drafts are extra: one more call for each message that needs a reply")
    return "\n".join(lines)


def _usd(value: Decimal | None) -> str:
    return (
        "unknown price (set one with providers set --price IN/OUT)"
        if value is None
        else (f"${value:.4f}")
    )
