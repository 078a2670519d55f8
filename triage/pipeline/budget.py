"""Monthly budgets: what a user has spent this calendar month, and whether a call may go out."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.adapters.db.tables import UsageEntry, User


def month_start(now: datetime | None = None) -> datetime:
    """Midnight UTC on the first day of the current calendar month."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_spend(session: Session, *, user_id: int, now: datetime | None = None) -> Decimal:
    """The sum of this month's ledger rows for the user (calls without a known price count 0)."""
    total = session.scalar(
        select(func.coalesce(func.sum(UsageEntry.cost_usd), 0)).where(
            UsageEntry.user_id == user_id, UsageEntry.created_at >= month_start(now)
        )
    )
    return Decimal(str(total or 0))


def over_budget_reason(session: Session, *, user_id: int) -> str | None:
    """Why no call may go out for this user now, or None while they are under their cap.

    Checked before every call; calls already in flight when the cap is reached still finish,
    so the overshoot is at most one call per busy worker.
    """
    cap = session.scalar(select(User.monthly_budget_usd).where(User.id == user_id))
    return _reason(session, user_id, cap)


def user_over_budget_reason(session: Session, user: User) -> str | None:
    """The same for a user row already loaded in this session: no query for one without a cap."""
    return _reason(session, user.id, user.monthly_budget_usd)


def _reason(session: Session, user_id: int, cap: Decimal | None) -> str | None:
    if cap is None:
        return None
    spent = month_spend(session, user_id=user_id)
    if spent < cap:
        return None
    return (
        f"monthly budget reached: spent ${spent:.4f} of ${Decimal(cap):.2f} this month; "
        "raise it with `triage users budget`, then `triage retry --status over_budget`"
    )
