"""Where the tests' real Postgres and Redis live, and how to make throwaway databases there."""

from __future__ import annotations

import re

import psycopg
import redis
from psycopg import sql

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ROLE = "postgres"
# Tried in order: `postgres` is the usual maintenance database, `test` is the one CI promises.
PG_ADMIN_DATABASES = ("postgres", "test")
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
FIX = "run scripts/test (it starts Postgres and Redis and installs Dovecot when it can)"
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ServiceUnavailable(RuntimeError):
    """A service the tests need cannot be reached; the message says how to fix it."""

    def __init__(self, service: str, detail: str, fix: str = FIX) -> None:
        super().__init__(f"{service} is unavailable: {detail}. Fix: {fix}")
        self.service = service
        self.detail = detail


def postgres_admin_url(database: str = PG_ADMIN_DATABASES[0]) -> str:
    """A libpq URL for the superuser role, for creating and dropping databases."""
    return f"postgresql://{PG_ROLE}@{PG_HOST}:{PG_PORT}/{database}"


def sqlalchemy_url(database: str) -> str:
    return f"postgresql+psycopg://{PG_ROLE}@{PG_HOST}:{PG_PORT}/{database}"


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    """Connect (autocommit) to the first admin database that exists."""
    errors = []
    for database in PG_ADMIN_DATABASES:
        try:
            return psycopg.connect(postgres_admin_url(database), autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            errors.append(str(exc).strip().splitlines()[0])
            if "does not exist" not in str(exc):
                break  # the server itself is the problem; another database won't help
    where = f"{PG_HOST}:{PG_PORT} as role {PG_ROLE}"
    raise ServiceUnavailable("Postgres", f"cannot connect to {where} ({'; '.join(errors)})")


def check_postgres() -> None:
    """Raise ServiceUnavailable unless Postgres accepts the test role."""
    with admin_connection() as conn:
        conn.execute("SELECT 1")


def check_redis() -> None:
    """Raise ServiceUnavailable unless Redis answers PING."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            "Redis", f"no answer at {REDIS_HOST}:{REDIS_PORT} ({exc})"
        ) from exc
    finally:
        client.close()


def create_database(name: str) -> None:
    with admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_checked(name))))


def drop_database(name: str) -> None:
    # FORCE: a leaked connection (a worker still running) must not keep the database alive.
    query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
    with admin_connection() as conn:
        conn.execute(query.format(sql.Identifier(_checked(name))))


def _checked(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe database name for tests: {name!r}")
    return name
