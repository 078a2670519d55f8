"""Commands that set things up: the schema, users, mail accounts, provider settings, keys."""

from __future__ import annotations

import argparse
import os

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.adapters.db.session import transaction
from triage.adapters.db.tables import MailAccount, ProviderSetting, User
from triage.adapters.models.presets import default_capabilities, preset_for
from triage.adapters.passwords import hash_password
from triage.adapters.secrets import generate_key, last4
from triage.runtime import Runtime

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
    password = secret_from_env(args.password_env)
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
        account.password_enc = rt.secrets.encrypt(password, owner=f"mail_accounts:{account.id}")
        return f"account {account.id} {account.username}@{account.host}:{account.port}"


def providers_set(rt: Runtime, args: argparse.Namespace) -> str:
    try:
        preset = preset_for(args.provider)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    base_url = args.base_url or preset.base_url
    if not base_url:
        raise CommandError(f"provider {args.provider} needs --base-url")
    api_key = secret_from_env(args.api_key_env) if args.api_key_env else ""
    if preset.needs_key and not api_key:
        raise CommandError(f"provider {args.provider} needs --api-key-env")
    with transaction(rt.db) as session:
        user = find_user(session, args.user)
        position = _position(session, user.id, args.task, args.fallback_of)
        setting = _replace_setting(session, user.id, args.task, position)
        setting.provider, setting.base_url, setting.model = args.provider, base_url, args.model
        setting.capabilities = default_capabilities(args.provider)
        setting.valid, setting.invalid_reason = True, None
        session.flush()
        setting.api_key_enc = rt.secrets.encrypt(api_key, owner=f"provider_settings:{setting.id}")
        setting.key_last4 = last4(api_key)
        role = "primary" if position == 0 else f"fallback {position}"
        return (
            f"provider {setting.provider} model {setting.model} for {args.task} ({role}), "
            f"key ...{setting.key_last4 or '----'}"
        )


def _position(session: Session, user_id: int, task: str, fallback_of: str | None) -> int:
    if not fallback_of:
        return 0
    rows = session.scalars(
        select(ProviderSetting).where(
            ProviderSetting.user_id == user_id, ProviderSetting.task == task
        )
    ).all()
    if not any(row.provider == fallback_of for row in rows):
        raise CommandError(f"no {task} provider {fallback_of} to fall back from")
    return max(row.position for row in rows) + 1


def _replace_setting(session: Session, user_id: int, task: str, position: int) -> ProviderSetting:
    setting = session.scalars(
        select(ProviderSetting).where(
            ProviderSetting.user_id == user_id,
            ProviderSetting.task == task,
            ProviderSetting.position == position,
        )
    ).first()
    if setting is None:
        setting = ProviderSetting(user_id=user_id, task=task, position=position)
        session.add(setting)
    return setting


def keys_generate(_args: argparse.Namespace) -> str:
    return generate_key()
