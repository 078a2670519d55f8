"""Is the service healthy: database and broker reachable (readiness), accounts syncing on time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from triage.adapters.db.tables import MailAccount
from triage.config import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # never a URL with a password, never a key: only what failed and how
    seconds: float


@dataclass(frozen=True)
class Freshness:
    account_id: int
    seconds_since_sync: float | None  # None: never synced
    expected_seconds: int
    silent: bool


def check_database(engine: Engine) -> Check:
    started = time.monotonic()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; the type says enough
        return Check("database", False, type(exc).__name__, time.monotonic() - started)
    return Check("database", True, "ok", time.monotonic() - started)


def check_broker(url: str | None, *, timeout: float = 2.0) -> Check:
    started = time.monotonic()
    if not url:
        return Check("broker", True, "none: embedded mode", 0.0)
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return Check("broker", False, type(exc).__name__, time.monotonic() - started)
    finally:
        client.close()
    return Check("broker", True, "ok", time.monotonic() - started)


def readiness(engine: Engine, settings: Settings) -> tuple[bool, dict[str, object]]:
    """What /readyz answers: ready only when the database and the broker both answer."""
    checks = [check_database(engine), check_broker(settings.broker_url)]
    body: dict[str, object] = {
        check.name: {"ok": check.ok, "detail": check.detail, "ms": round(check.seconds * 1000)}
        for check in checks
    }
    return all(check.ok for check in checks), body


def account_freshness(
    session: Session, *, settings: Settings, now: datetime | None = None
) -> Iterator[Freshness]:
    """Seconds since each account's last successful sync, and whether that is too long: more
    than TRIAGE_ACCOUNT_SILENCE_FACTOR expected intervals (the account's own, else the sync
    interval), the rule the console's accounts page shows too."""
    now = now or datetime.now(UTC)
    rows = session.execute(
        select(
            MailAccount.id,
            MailAccount.last_success_at,
            MailAccount.created_at,
            MailAccount.expected_interval_seconds,
        ).order_by(MailAccount.id)
    )
    for account_id, last_success, created, expected in rows:
        interval = expected or settings.sync_interval_seconds
        since = None if last_success is None else (now - _aware(last_success)).total_seconds()
        # A new account is judged from its creation, so one that never syncs still alerts.
        age = since if since is not None else (now - _aware(created)).total_seconds()
        silent = age > interval * settings.account_silence_factor
        yield Freshness(account_id, since, interval, silent)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
