"""The browser tests use the integration fixtures (Postgres, Redis, the service environment)."""

from tests.integration.conftest import migrated_pg, pg_engine, service_env

__all__ = ["migrated_pg", "pg_engine", "service_env"]
