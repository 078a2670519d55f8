"""Console sessions: a random token in a signed cookie, its hash in the database, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from triage.adapters.db.session import SessionFactory, transaction
from triage.adapters.db.tables import ConsoleSession, User

COOKIE = "triage_session"
SIGNIN_COOKIE = "triage_signin"  # carries the CSRF secret of the sign-in form before a session


@dataclass(frozen=True)
class Viewer:
    """Who is asking: every query the console runs is scoped by this."""

    id: int
    email: str
    is_admin: bool
    csrf: str


class SessionStore:
    def __init__(self, db: SessionFactory, *, signing_key: str, lifetime: timedelta) -> None:
        self._db = db
        self._key = signing_key.encode()
        self._lifetime = lifetime
        self._signer = URLSafeTimedSerializer(signing_key, salt="console-session")

    @property
    def max_age(self) -> int:
        return int(self._lifetime.total_seconds())

    def open(self, user_id: int) -> str:
        """Store a new session and return the cookie value that names it."""
        token = secrets.token_urlsafe(32)
        with transaction(self._db) as session:
            session.add(
                ConsoleSession(
                    token_sha256=_sha256(token),
                    user_id=user_id,
                    expires_at=datetime.now(UTC) + self._lifetime,
                )
            )
            # Expired rows are useless; clearing them here keeps the table small without a job.
            session.execute(
                delete(ConsoleSession).where(ConsoleSession.expires_at < datetime.now(UTC))
            )
        return str(self._signer.dumps(token))

    def viewer(self, cookie: str | None, *, session: Session | None = None) -> Viewer | None:
        """Who the cookie names, looked up in `session` when given (one connection a request)."""
        token = self._token(cookie)
        if token is None:
            return None
        if session is None:
            with self._db() as own:
                return self.viewer(cookie, session=own)
        row = session.execute(
            select(User.id, User.email, User.is_admin)
            .join(ConsoleSession, ConsoleSession.user_id == User.id)
            .where(
                ConsoleSession.token_sha256 == _sha256(token),
                ConsoleSession.expires_at > datetime.now(UTC),
            )
        ).first()
        if row is None:
            return None
        return Viewer(id=row.id, email=row.email, is_admin=row.is_admin, csrf=self._csrf(token))

    def close(self, cookie: str | None) -> None:
        token = self._token(cookie)
        if token is not None:
            with transaction(self._db) as session:
                session.execute(
                    delete(ConsoleSession).where(ConsoleSession.token_sha256 == _sha256(token))
                )

    def csrf_of(self, cookie: str) -> str:
        """The CSRF token of the session a cookie names (no database round trip)."""
        token = self._token(cookie)
        if token is None:
            raise ValueError("not a session cookie of this console")
        return self._csrf(token)

    def signin_csrf(self, nonce: str) -> str:
        """The sign-in form's token, bound to the nonce in its short-lived cookie."""
        return self._csrf("signin:" + nonce)

    def _token(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            token = self._signer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None

    def _csrf(self, token: str) -> str:
        return hmac.new(self._key, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given), expected)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
