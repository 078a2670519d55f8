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

# A db number the app's defaults never use, so a test run cannot wipe someone's broker.
REDIS_TEST_DB = 13


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
    """A Redis URL on db 13, flushed before and after the session."""
    try:
        services.check_redis()
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    url = services.redis_url(REDIS_TEST_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


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
