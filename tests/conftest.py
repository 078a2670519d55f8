"""Session-wide fixtures for the real services the tests run against."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from tests.support import services
from tests.support.dovecot import Dovecot, DovecotError
from tests.support.model_server import FakeModelServer
from tests.support.services import ServiceUnavailable

# Test sessions claim Redis databases 1-15 (the app's default is 0), one each, by this key.
REDIS_FIRST_TEST_DB = 1
REDIS_CLAIM_KEY = "triage-test:claimed-by"
REDIS_CLAIM_SECONDS = 3 * 3600


@dataclass(frozen=True)
class ImapUser:
    host: str
    port: int
    username: str
    password: str


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A SQLAlchemy URL for a fresh, empty database, dropped after the session."""
    name = f"triage_test_{secrets.token_hex(4)}"
    try:
        services.create_database(name)
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield services.sqlalchemy_url(name)
    services.drop_database(name)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL on a database no other test session holds, flushed before and after."""
    try:
        services.check_redis()
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    db, client = _claim_redis_db()
    yield services.redis_url(db)
    client.flushdb()
    client.close()


def _claim_redis_db() -> tuple[int, redis.Redis]:
    """Test sessions may run side by side; each takes a database of its own (1-15, never 0)."""
    token = secrets.token_hex(8)
    for db in range(REDIS_FIRST_TEST_DB, 16):
        client = redis.Redis.from_url(services.redis_url(db))
        if client.set(REDIS_CLAIM_KEY, token, nx=True, ex=REDIS_CLAIM_SECONDS):
            client.flushdb()
            client.set(REDIS_CLAIM_KEY, token, ex=REDIS_CLAIM_SECONDS)
            return db, client
        client.close()
    pytest.fail("every Redis test database (1-15) is held by another test session", pytrace=False)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A started Dovecot on a free port, private to this session."""
    try:
        server = Dovecot().start()
    except (ServiceUnavailable, DovecotError) as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.close()


@pytest.fixture
def imap_user(dovecot: Dovecot) -> ImapUser:
    """A fresh user with an empty mailbox on the session's Dovecot."""
    username = f"user-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    dovecot.add_user(username, password)
    return ImapUser(dovecot.host, dovecot.port, username, password)


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    """A started fake OpenAI-compatible provider; script it with `.script()` or `.responder`."""
    with FakeModelServer() as server:
        yield server
