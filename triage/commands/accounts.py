"""Account commands after `accounts add`: a new OAuth2 refresh token, and write-back settings."""

from __future__ import annotations

import argparse

from sqlalchemy.orm import Session

from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, User
from triage.commands.setup import CommandError, secret_from_env
from triage.domain.schemas import DEFAULT_CATEGORIES
from triage.domain.write_back import (
    WriteBackSettings,
    check_folder,
    keyword_for,
    parse_move,
)
from triage.pipeline.credentials import secret_owner
from triage.runtime import Runtime


def accounts_reauth(rt: Runtime, args: argparse.Namespace) -> str:
    """Store a fresh refresh token; the account leaves `reauth_needed` and syncs again."""
    refresh_token = secret_from_env(args.refresh_token_env)
    client_secret = secret_from_env(args.client_secret_env) if args.client_secret_env else None
    with transaction(rt.db) as session:
        account = _account(session, args.account)
        if account.auth_method != "oauth2":
            raise CommandError(f"account {account.id} logs in with a password, not OAuth2")
        account.oauth_refresh_token_enc = rt.secrets.encrypt(
            refresh_token, owner=secret_owner(account.id, "refresh")
        )
        if client_secret is not None:
            account.oauth = {
                **(account.oauth or {}),
                "client_secret_enc": rt.secrets.encrypt(
                    client_secret, owner=secret_owner(account.id, "client")
                ),
            }
        account.oauth_access_token_enc = None
        account.oauth_access_expires_at = None
        account.status, account.last_error, account.consecutive_failures = "new", None, 0
        return f"account {account.id}: new refresh token stored; the next sync uses it"


def accounts_write_back(rt: Runtime, args: argparse.Namespace) -> str:
    """Turn keywords, moves and draft APPENDs on or off for one account."""
    with transaction(rt.db) as session:
        account = _account(session, args.account)
        current = WriteBackSettings.model_validate(account.write_back or {})
        changes: dict[str, object] = {}
        if args.keywords:
            changes["keywords"] = args.keywords == "on"
        if args.clear_moves or args.move:
            changes["moves"] = _moves(session, account, args.move or [])
        if args.drafts_folder:
            account.drafts_folder = _folder(args.drafts_folder)
            changes["append_drafts"] = True
        if args.append_drafts:
            changes["append_drafts"] = args.append_drafts == "on"
        settings = current.model_copy(update=changes)
        account.write_back = settings.model_dump()
        return describe_write_back(account, settings)


def describe_write_back(account: MailAccount, settings: WriteBackSettings) -> str:
    keywords = f"on ({keyword_for('<category>')})" if settings.keywords else "off"
    moves = ", ".join(f"{name} -> {folder}" for name, folder in settings.moves.items()) or "none"
    drafts = "off"
    if settings.append_drafts:
        folder = account.drafts_folder or "the folder the server marks as Drafts"
        drafts = f"on, to {folder}"
    return f"account {account.id} write-back: keywords {keywords}; moves {moves}; drafts {drafts}"


def _account(session: Session, account_id: int) -> MailAccount:
    account = session.get(MailAccount, account_id)
    if account is None:
        raise CommandError(f"no account {account_id}")
    return account


def _moves(session: Session, account: MailAccount, texts: list[str]) -> dict[str, str]:
    known = _categories(session.get_one(User, account.user_id))
    watched = set(account.folders or ["INBOX"])
    moves: dict[str, str] = {}
    for text in texts:
        try:
            category, folder = parse_move(text)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if category not in known:
            raise CommandError(f"unknown category {category}; one of {', '.join(sorted(known))}")
        if folder in watched:
            # Mail moved into a watched folder would be fetched and triaged again.
            raise CommandError(f"{folder} is a folder this account syncs; pick another one")
        moves[category] = folder
    return moves


def _categories(user: User) -> set[str]:
    custom = [str(item.get("name")) for item in user.categories or [] if item.get("name")]
    return set(custom) or {category.name for category in DEFAULT_CATEGORIES}


def _folder(name: str) -> str:
    try:
        return check_folder(name)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
