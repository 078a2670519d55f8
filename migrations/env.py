"""Alembic environment: the URL comes from the service settings, the metadata from the tables."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from triage.adapters.db.session import make_engine
from triage.adapters.db.tables import Base
from triage.config import get_settings

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # The console's text search uses trigram indexes (a trusted extension since PG 13).
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url()
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `triage db upgrade`")
run_migrations_online()
