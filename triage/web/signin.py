"""Checking a password: throttled, timing-safe for unknown users, rehashing old hashes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from triage.adapters.db.session import transaction
from triage.adapters.db.tables import User
from triage.adapters.passwords import hash_password, needs_rehash, verify_password
from triage.web.state import Console


@dataclass(frozen=True)
class SigninOutcome:
    user_id: int | None = None
    wait_seconds: int = 0  # > 0: throttled, the password was not even checked

    @property
    def ok(self) -> bool:
        return self.user_id is not None


def check_password(console: Console, *, email: str, password: str, ip: str) -> SigninOutcome:
    email = email.strip()[:320]
    wait = console.throttle.wait_seconds(email, ip)
    if wait:
        return SigninOutcome(wait_seconds=wait)
    with transaction(console.rt.db) as session:
        user = session.scalars(select(User).where(func.lower(User.email) == email.lower())).first()
        # Unknown users are checked against a dummy hash, so timing does not tell who exists.
        ok = verify_password(password, user.password_hash if user else None)
        if ok and user is not None and user.password_hash and needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        user_id = user.id if ok and user is not None else None
    console.throttle.record(email, ip, succeeded=user_id is not None)
    return SigninOutcome(user_id=user_id)
