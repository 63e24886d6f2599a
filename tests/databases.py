"""Throwaway databases on the real servers (PostgreSQL, MySQL/MariaDB) for tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


def server_problem(admin_url: str, **connect_args) -> str | None:
    """Why the server at `admin_url` cannot be used (one line), or None if it answers."""
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        return f"{admin_url} is not reachable ({exc.__class__.__name__})"
    finally:
        engine.dispose()
    return None


@contextmanager
def throwaway_database(admin_url: str, prefix: str = "callqa_test") -> Iterator[str]:
    """A new, uniquely named database on the server at `admin_url`, as a URL; dropped
    afterwards, also when the test fails (PostgreSQL: WITH (FORCE), since a daemon the
    test started may still hold connections)."""
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    quoted = admin.dialect.identifier_preparer.quote(name)
    force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
        try:
            url = sa.engine.make_url(admin_url).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
    finally:
        admin.dispose()
