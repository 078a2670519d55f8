"""Accounts and per-user settings: sync health, model settings (keys masked), budget use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import MailAccount, ProviderSetting, UsageEntry, User
from triage.web.queries.scope import owner_filter
from triage.web.sessions import Viewer


class AccountHealth(BaseModel):
    id: int
    user_id: int
    owner: str
    address: str
    folders: list[str]
    status: str
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    expected_interval_seconds: int
    silent: bool  # no successful sync for much longer than expected


class ModelSetting(BaseModel):
    """A provider setting as the console shows it: the key only as its last four characters."""

    id: int
    task: str
    position: int
    provider: str
    base_url: str
    model: str
    key_hint: str
    valid: bool
    invalid_reason: str | None
    capabilities: dict[str, Any]
    probe_report: dict[str, Any]
    probed_at: datetime | None


class UserSettings(BaseModel):
    id: int
    email: str
    is_admin: bool
    monthly_budget_usd: float | None
    month_cost_usd: float
    models: list[ModelSetting]


def month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def accounts_health(
    session: Session, viewer: Viewer, *, default_interval: int, silence_factor: float
) -> list[AccountHealth]:
    stmt = select(MailAccount, User.email).join(User).order_by(MailAccount.id)
    owner = owner_filter(viewer, None)
    if owner is not None:
        stmt = stmt.where(MailAccount.user_id == owner)
    now = datetime.now(UTC)
    found = []
    for account, email in session.execute(stmt).tuples():
        expected = account.expected_interval_seconds or default_interval
        since = account.last_success_at or account.created_at
        silent = _aware(since) < now - timedelta(seconds=expected * silence_factor)
        found.append(
            AccountHealth(
                id=account.id,
                user_id=account.user_id,
                owner=email,
                address=f"{account.username}@{account.host}:{account.port}",
                folders=list(account.folders or []),
                status=account.status,
                last_success_at=account.last_success_at,
                last_error=account.last_error,
                consecutive_failures=account.consecutive_failures,
                expected_interval_seconds=expected,
                silent=silent,
            )
        )
    return found


def users_settings(
    session: Session, viewer: Viewer, *, user_id: int | None = None
) -> list[UserSettings]:
    stmt = select(User).order_by(User.id)
    owner = owner_filter(viewer, user_id)
    if owner is not None:
        stmt = stmt.where(User.id == owner)
    users = list(session.scalars(stmt))
    ids = [user.id for user in users]
    costs = dict(
        session.execute(
            select(UsageEntry.user_id, func.coalesce(func.sum(UsageEntry.cost_usd), 0))
            .where(UsageEntry.user_id.in_(ids), UsageEntry.created_at >= month_start())
            .group_by(UsageEntry.user_id)
        )
        .tuples()
        .all()
    )
    models: dict[int, list[ModelSetting]] = {user_id: [] for user_id in ids}
    for row in session.scalars(
        select(ProviderSetting)
        .where(ProviderSetting.user_id.in_(ids))
        .order_by(ProviderSetting.task, ProviderSetting.position)
    ):
        models[row.user_id].append(_masked(row))
    return [
        UserSettings(
            id=user.id,
            email=user.email,
            is_admin=user.is_admin,
            monthly_budget_usd=(
                float(user.monthly_budget_usd) if user.monthly_budget_usd is not None else None
            ),
            month_cost_usd=float(costs.get(user.id) or 0),
            models=models[user.id],
        )
        for user in users
    ]


def _masked(row: ProviderSetting) -> ModelSetting:
    return ModelSetting(
        id=row.id,
        task=row.task,
        position=row.position,
        provider=row.provider,
        base_url=row.base_url,
        model=row.model,
        key_hint=f"…{row.key_last4}" if row.key_last4 else ("set" if row.api_key_enc else "none"),
        valid=row.valid,
        invalid_reason=row.invalid_reason,
        capabilities=dict(row.capabilities or {}),
        probe_report=dict(row.probe_report or {}),
        probed_at=row.probed_at,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
