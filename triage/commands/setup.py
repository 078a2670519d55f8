"""Commands that set things up: users and mail accounts, and the helpers every command uses."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, User
from triage.adapters.oauth_presets import preset as oauth_preset
from triage.runtime import Runtime

# Every command imports this module for CommandError and the helpers below, so what only one
# command needs (argon2, the price table, the IMAP client behind secret_owner) is imported there.

DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "plain": 143}


class CommandError(Exception):
    """A user mistake with a clear message; the CLI prints it and exits 2."""


def secret_from_env(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise CommandError(f"environment variable {variable} is not set or empty")
    return value


def find_user(session: Session, email: str) -> User:
    user = session.scalars(select(User).where(func.lower(User.email) == email.lower())).first()
    if user is None:
        raise CommandError(f"no user {email}; add one with `triage users add {email}`")
    return user


def users_add(rt: Runtime, args: argparse.Namespace) -> str:
    from triage.adapters.passwords import hash_password

    with transaction(rt.db) as session:
        if session.scalars(
            select(User).where(func.lower(User.email) == args.email.lower())
        ).first():
            raise CommandError(f"user {args.email} already exists")
        password = secret_from_env(args.password_env) if args.password_env else None
        user = User(
            email=args.email,
            is_admin=args.admin,
            password_hash=hash_password(password) if password else None,
        )
        session.add(user)
        session.flush()
        return f"user {user.id} {user.email}{' (admin)' if user.is_admin else ''}"


def accounts_add(rt: Runtime, args: argparse.Namespace) -> str:
    from triage.pipeline.credentials import secret_owner

    oauth = _oauth_request(args)
    password = None if oauth else secret_from_env(args.password_env)
    with transaction(rt.db) as session:
        user = find_user(session, args.user)
        account = MailAccount(
            user_id=user.id,
            host=args.host,
            port=args.port or DEFAULT_PORTS[args.security],
            security=args.security,
            username=args.username,
            folders=list(args.folder or ["INBOX"]),
        )
        session.add(account)
        session.flush()  # the ID is part of what the password is bound to
        where = f"account {account.id} {account.username}@{account.host}:{account.port}"
        if oauth is None:
            account.password_enc = rt.secrets.encrypt(
                password or "", owner=secret_owner(account.id, "password")
            )
            return where
        _store_oauth(rt, account, oauth)
        return f"{where} (OAuth2 {oauth.provider}, token endpoint {oauth.token_url})"


@dataclass(frozen=True)
class _OAuthRequest:
    provider: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...]


def _oauth_request(args: argparse.Namespace) -> _OAuthRequest | None:
    """The OAuth2 options of `accounts add`, checked; None for a password account."""
    if not args.oauth2:
        if args.oauth_provider or args.refresh_token_env or args.client_id:
            raise CommandError("OAuth2 options need --oauth2")
        if not args.password_env:
            raise CommandError("give --password-env VAR, or --oauth2 with its options")
        return None
    if args.password_env:
        raise CommandError("--oauth2 accounts take no --password-env")
    needed = ("oauth_provider", "client_id", "refresh_token_env")
    missing = [name for name in needed if not getattr(args, name)]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise CommandError(f"--oauth2 needs {flags}")
    try:
        found = oauth_preset(args.oauth_provider, args.token_url)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return _OAuthRequest(
        provider=args.oauth_provider,
        token_url=found.token_url,
        client_id=args.client_id,
        client_secret=secret_from_env(args.client_secret_env) if args.client_secret_env else "",
        refresh_token=secret_from_env(args.refresh_token_env),
        scopes=tuple(args.scope) if args.scope else found.scopes,
    )


def _store_oauth(rt: Runtime, account: MailAccount, oauth: _OAuthRequest) -> None:
    """Settings in the clear, the client secret and refresh token encrypted and owner-bound."""
    from triage.pipeline.credentials import secret_owner

    settings: dict[str, object] = {
        "provider": oauth.provider,
        "token_url": oauth.token_url,
        "client_id": oauth.client_id,
        "scopes": list(oauth.scopes),
    }
    if oauth.client_secret:
        settings["client_secret_enc"] = rt.secrets.encrypt(
            oauth.client_secret, owner=secret_owner(account.id, "client")
        )
    account.auth_method = "oauth2"
    account.oauth = settings
    account.oauth_refresh_token_enc = rt.secrets.encrypt(
        oauth.refresh_token, owner=secret_owner(account.id, "refresh")
    )


def price_override(value: str | None) -> str | None:
    """`--price IN/OUT` (USD per million tokens) checked and normalized, or None for the table."""
    from triage.adapters.models.prices import parse_override

    if not value:
        return None
    try:
        pair = parse_override(value)
    except (ArithmeticError, ValueError):
        pair = None
    if pair is None or "/" not in value or any(not p.is_finite() or p < 0 for p in pair):
        raise CommandError(f"--price {value!r}: USD per million tokens as IN/OUT, e.g. 0.15/0.60")
    return f"{pair[0]}/{pair[1]}"
