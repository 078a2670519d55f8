"""Sign-in throttling: too many failed passwords for an address or from an IP waits a while."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import SigninAttempt


class SigninThrottle:
    """Counts failures in the database, so every console process sees the same count."""

    def __init__(
        self,
        db: SessionFactory,
        *,
        max_failures: int,
        max_failures_per_ip: int,
        window: timedelta,
    ) -> None:
        self._db = db
        self._max = max_failures
        self._max_ip = max_failures_per_ip
        self._window = window

    def wait_seconds(self, email: str, ip: str) -> int:
        """0 when an attempt may be made now, else how long to wait."""
        since = datetime.now(UTC) - self._window
        waits = [0]
        with self._db() as session:
            for column, value, limit in (
                (SigninAttempt.email, email.lower(), self._max),
                (SigninAttempt.ip, ip, self._max_ip),
            ):
                count, oldest = session.execute(
                    select(func.count(), func.min(SigninAttempt.created_at)).where(
                        column == value,
                        SigninAttempt.succeeded.is_(False),
                        SigninAttempt.created_at > since,
                    )
                ).one()
                if count >= limit and oldest is not None:
                    waits.append(_seconds_until(_aware(oldest) + self._window))
        return max(waits)

    def record(self, email: str, ip: str, *, succeeded: bool) -> None:
        with transaction(self._db) as session:
            session.add(SigninAttempt(email=email.lower(), ip=ip, succeeded=succeeded))
            stale = datetime.now(UTC) - 4 * self._window
            session.execute(delete(SigninAttempt).where(SigninAttempt.created_at < stale))
            if succeeded:
                # The right password ends the streak for that address (not for the IP).
                session.execute(
                    delete(SigninAttempt).where(
                        SigninAttempt.email == email.lower(), SigninAttempt.succeeded.is_(False)
                    )
                )


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds_until(moment: datetime) -> int:
    return max(1, int((moment - datetime.now(UTC)).total_seconds()) + 1)
