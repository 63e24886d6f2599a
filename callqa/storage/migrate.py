"""Versioned schema migrations (Alembic), run programmatically: no alembic.ini needed.

`upgrade` is safe to run from several processes at once (two `callqa stage` on a fresh
database, run workers starting together): each takes a database-wide lock before Alembic
reads the current revision, so one migrates and the others wait, then find the head.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Key of the PostgreSQL advisory lock that serializes migrations (any constant bigint).
PG_MIGRATION_LOCK = 0x63616C6C7161  # "callqa"


def alembic_config(connection: sa.Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    from alembic import command

    if engine.dialect.name == "sqlite":
        _upgrade_sqlite(engine, revision)
        return
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends; a second migrator waits here.
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
        command.upgrade(alembic_config(connection), revision)


def _upgrade_sqlite(engine: sa.Engine, revision: str) -> None:
    """Migrate inside one `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock up
    front (waiting out the busy timeout while another process migrates), and it keeps the
    DDL transactional, which Python's sqlite3 module otherwise commits statement by statement.
    """
    from alembic import command

    with engine.connect() as connection:
        dbapi_connection = connection.connection.driver_connection
        isolation_level = dbapi_connection.isolation_level
        dbapi_connection.isolation_level = None  # sqlite3 leaves BEGIN / COMMIT to us
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            command.upgrade(alembic_config(connection), revision)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            # Only now: setting it while a transaction is open would commit that.
            dbapi_connection.isolation_level = isolation_level


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
