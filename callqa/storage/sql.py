"""Statement helpers both dialects share: upserts, insert-if-absent, UTC timestamps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa


def utcnow() -> datetime:
    return datetime.now(UTC)


def _upsert(
    conn: sa.Connection, table: sa.Table, rows: Sequence[dict], keys: Sequence[str]
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE, on both dialects."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"unsupported database dialect {conn.dialect.name!r}")
    stmt = insert(table)
    updates = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=updates), list(rows))


def _insert_if_absent(conn: sa.Connection, table: sa.Table, row: dict, keys: Sequence[str]) -> bool:
    """INSERT … ON CONFLICT (keys) DO NOTHING, on both dialects; True if the row was new."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"unsupported database dialect {conn.dialect.name!r}")
    stmt = insert(table).values(row).on_conflict_do_nothing(index_elements=list(keys))
    if conn.dialect.insert_returning:  # a row comes back only if one was inserted
        return conn.execute(stmt.returning(*table.primary_key.columns)).first() is not None
    return conn.execute(stmt).rowcount == 1  # SQLite before 3.35: sqlite3_changes()


def _as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything callqa stores is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def insert_many_if_absent(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict],
    keys: Sequence[str],
    returning: sa.Column,
    chunk: int = 500,
) -> list:
    """Multi-row INSERT … ON CONFLICT (keys) DO NOTHING RETURNING `returning`: the values
    of the rows that were new. Chunked to stay under SQLite's bound-parameter limit."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"unsupported database dialect {conn.dialect.name!r}")
    new: list = []
    for start in range(0, len(rows), chunk):
        stmt = (
            insert(table)
            .values(list(rows[start : start + chunk]))
            .on_conflict_do_nothing(index_elements=list(keys))
            .returning(returning)
        )
        new += [r[0] for r in conn.execute(stmt)]
    return new
