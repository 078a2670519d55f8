"""Per-user settings commands: monthly budget, screening policy, writing style, categories."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from triage.adapters.db.session import transaction
from triage.commands.setup import CommandError, find_user, secret_from_env
from triage.domain.schemas import parse_categories
from triage.domain.screening import RULE_NAMES, action_for, check_rule_action
from triage.pipeline.budget import month_spend
from triage.pipeline.style import StyleError, learn_style
from triage.runtime import Runtime, mailbox_opener

MAX_STYLE_NOTE = 2000


def budget(rt: Runtime, args: argparse.Namespace) -> str:
    """`triage users budget EMAIL --monthly-usd X | --clear`: the cap, and this month's spend."""
    cap = None if args.clear else _usd(args.monthly_usd)
    with transaction(rt.db) as session:
        user = find_user(session, args.email)
        user.monthly_budget_usd = cap
        spent = month_spend(session, user_id=user.id)
    limit = "no monthly cap" if cap is None else f"monthly cap ${cap:.2f}"
    return f"{user.email}: {limit}; spent ${spent:.4f} this month"


def _usd(value: str | None) -> Decimal:
    if value is None:
        raise CommandError("give --monthly-usd AMOUNT, or --clear to remove the cap")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"--monthly-usd {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e8"):
        raise CommandError("--monthly-usd must be between 0 and 99,999,999")
    return amount.quantize(Decimal("0.0001"))


def screening(rt: Runtime, args: argparse.Namespace) -> str:
    """`triage users screening EMAIL [--rule R --action skip|cheap|model]`: set, then show."""
    if (args.rule is None) != (args.action is None):
        raise CommandError("give --rule and --action together (or neither, to show the policy)")
    with transaction(rt.db) as session:
        user = find_user(session, args.email)
        policy = dict(user.screening or {})
        if args.rule is not None:
            try:
                check_rule_action(args.rule, args.action)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            policy[args.rule] = args.action
            user.screening = policy  # a new dict, so the JSON column sees the change
    lines = [f"{args.email}: screening policy"]
    for rule in RULE_NAMES:
        default = " (default)" if rule not in policy else ""
        lines.append(f"  {rule}: {action_for(rule, policy)}{default}")
    return "\n".join(lines)


def style(rt: Runtime, args: argparse.Namespace) -> str:
    """`triage users style EMAIL --note-env VAR | --from-sent --account ID | --clear`."""
    chosen = sum([bool(args.note_env), bool(args.from_sent), bool(args.clear)])
    if chosen != 1:
        raise CommandError("give exactly one of --note-env VAR, --from-sent --account ID, --clear")
    if args.from_sent:
        return _style_from_sent(rt, args)
    note = None if args.clear else secret_from_env(args.note_env).strip()
    if note is not None and len(note) > MAX_STYLE_NOTE:
        raise CommandError(f"the style note is over {MAX_STYLE_NOTE} characters")
    with transaction(rt.db) as session:
        user = find_user(session, args.email)
        user.style_note = note
        if args.clear:
            user.style_profile = None
    return f"{args.email}: style {'cleared' if args.clear else 'note saved'}"


def _style_from_sent(rt: Runtime, args: argparse.Namespace) -> str:
    if args.account is None:
        raise CommandError("--from-sent needs --account ID")
    with rt.db() as session:
        user_id = find_user(session, args.email).id
    try:
        report = learn_style(
            user_id=user_id,
            account_id=args.account,
            db=rt.db,
            model=rt.model,
            secrets=rt.secrets,
            open_mailbox=mailbox_opener(rt),
            folder=args.folder,
            count=args.count,
        )
    except StyleError as exc:
        raise CommandError(str(exc)) from None
    return f"{args.email}: style profile learned from {report.samples} sent messages:\n" + (
        report.profile
    )


def categories(rt: Runtime, args: argparse.Namespace) -> str:
    """`triage users categories EMAIL --file PATH | --defaults`: the labels the model chooses."""
    if bool(args.file) == bool(args.defaults):
        raise CommandError("give exactly one of --file PATH (JSON) or --defaults")
    value = None
    if args.file:
        try:
            value = json.loads(Path(args.file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read {args.file}: {exc}") from None
    try:
        parsed = parse_categories(value)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    with transaction(rt.db) as session:
        user = find_user(session, args.email)
        user.categories = [c.model_dump() for c in parsed] if value is not None else None
    return f"{args.email}: categories " + ", ".join(c.name for c in parsed)
