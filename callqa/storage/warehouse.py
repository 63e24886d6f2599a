"""The warehouse: idempotent reads and writes of callqa's tables, on SQLite or PostgreSQL.

Every query is scoped to one tenant; no method reads or writes across tenants except
`staged_calls_to_process`, which returns each row with its own tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from callqa.analysis import weakest_index
from callqa.storage import tables as t

ALL_OPERATORS = "*"
_MIGRATED: set[str] = set()  # database URLs brought to the head revision by this process


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # WAL lets the Dagster UI read while a run writes.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


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


def _as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything callqa stores is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Warehouse:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    @classmethod
    def from_url(cls, url: str, migrate: bool = True) -> Warehouse:
        warehouse = cls(make_engine(url))
        # Every run step opens the warehouse; checking migrations once per process is enough.
        if migrate and url not in _MIGRATED:
            warehouse.migrate()
            _MIGRATED.add(url)
        return warehouse

    def migrate(self) -> None:
        from callqa.storage.migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # tenants -------------------------------------------------------------------------------
    def upsert_tenant(self, tenant_id: str, name: str, config: dict) -> None:
        with self.engine.begin() as conn:
            _upsert(
                conn,
                t.tenants,
                [{"id": tenant_id, "name": name, "config": config, "updated_at": utcnow()}],
                ["id"],
            )

    # staging -------------------------------------------------------------------------------
    def stage_call(
        self,
        *,
        tenant: str,
        external_id: str,
        source: str,
        source_uri: str,
        category: str | None = None,
        operator: str | None = None,
        started_at: datetime | None = None,
    ) -> bool:
        """Stage a call once; return False if it was already staged (its state is kept)."""
        now = utcnow()
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(t.staged_calls.c.id).where(
                    t.staged_calls.c.tenant == tenant, t.staged_calls.c.external_id == external_id
                )
            ).first()
            if exists:
                return False
            conn.execute(
                t.staged_calls.insert().values(
                    tenant=tenant,
                    external_id=external_id,
                    source=source,
                    source_uri=source_uri,
                    category=category,
                    operator=operator,
                    started_at=started_at,
                    status="staged",
                    error=None,
                    staged_at=now,
                    updated_at=now,
                )
            )
            return True

    def staged_call(self, tenant: str, external_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(t.staged_calls).where(
                        t.staged_calls.c.tenant == tenant,
                        t.staged_calls.c.external_id == external_id,
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return {**row, "started_at": _as_utc(row["started_at"])}

    def staged_calls(self, tenant: str, statuses: Iterable[str] | None = None) -> list[dict]:
        query = sa.select(t.staged_calls).where(t.staged_calls.c.tenant == tenant)
        if statuses is not None:
            query = query.where(t.staged_calls.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(t.staged_calls.c.id)).mappings()]

    def set_staged_status(
        self, tenant: str, external_ids: Iterable[str], status: str, error: str | None = None
    ) -> None:
        ids = list(external_ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                t.staged_calls.update()
                .where(t.staged_calls.c.tenant == tenant, t.staged_calls.c.external_id.in_(ids))
                .values(status=status, error=error, updated_at=utcnow())
            )

    # calls ---------------------------------------------------------------------------------
    def upsert_call(self, **values: Any) -> None:
        with self.engine.begin() as conn:
            _upsert(conn, t.calls, [{**values, "updated_at": utcnow()}], ["tenant", "external_id"])

    def call(self, tenant: str, external_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(t.calls).where(
                        t.calls.c.tenant == tenant, t.calls.c.external_id == external_id
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else {**row, "started_at": _as_utc(row["started_at"])}

    # transcripts ---------------------------------------------------------------------------
    def upsert_transcript(
        self,
        *,
        tenant: str,
        external_id: str,
        stage: str,
        model: str | None,
        language: str | None,
        word_count: int,
        data: dict,
    ) -> None:
        with self.engine.begin() as conn:
            _upsert(
                conn,
                t.transcripts,
                [
                    {
                        "tenant": tenant,
                        "external_id": external_id,
                        "stage": stage,
                        "model": model,
                        "language": language,
                        "word_count": word_count,
                        "data": data,
                        "updated_at": utcnow(),
                    }
                ],
                ["tenant", "external_id", "stage"],
            )

    def transcript(self, tenant: str, external_id: str, stage: str) -> dict | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(t.transcripts.c.data).where(
                    t.transcripts.c.tenant == tenant,
                    t.transcripts.c.external_id == external_id,
                    t.transcripts.c.stage == stage,
                )
            ).scalar_one_or_none()

    # analyses ------------------------------------------------------------------------------
    def record_attempts(
        self, tenant: str, external_id: str, run_id: str | None, attempts: Iterable[dict]
    ) -> None:
        """Append-only: every scoring attempt is kept, valid or not."""
        rows = [
            {
                **a,
                "tenant": tenant,
                "external_id": external_id,
                "run_id": run_id,
                "created_at": utcnow(),
            }
            for a in attempts
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(t.scoring_attempts.insert(), rows)

    def attempts(self, tenant: str, external_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    sa.select(t.scoring_attempts)
                    .where(
                        t.scoring_attempts.c.tenant == tenant,
                        t.scoring_attempts.c.external_id == external_id,
                    )
                    .order_by(t.scoring_attempts.c.id)
                ).mappings()
            ]

    def save_analysis(self, record: dict, call_day: date) -> None:
        call, scores, scoring = record["call"], record["scores"], record["scoring"]
        tenant, external_id = call["tenant"], call["external_id"]
        weakest = scores["criteria"][weakest_index(scores["criteria"])]
        now = utcnow()
        with self.engine.begin() as conn:
            _upsert(
                conn,
                t.analyses,
                [
                    {
                        "tenant": tenant,
                        "external_id": external_id,
                        "call_day": call_day,
                        "operator": call.get("operator"),
                        "category": call.get("category"),
                        "preset": scoring["preset"],
                        "prompt_version": scoring["prompt_version"],
                        "scorer": scoring["scorer"],
                        "model": scoring["model"],
                        "total": scores["total"],
                        "weakest_criterion": weakest["id"],
                        "summary": record["summary"],
                        "cost_usd": scoring["cost_usd"],
                        "record": record,
                        "updated_at": now,
                    }
                ],
                ["tenant", "external_id"],
            )
            # A changed preset may drop criteria: replace this call's rows as a whole.
            conn.execute(
                t.criterion_scores.delete().where(
                    t.criterion_scores.c.tenant == tenant,
                    t.criterion_scores.c.external_id == external_id,
                )
            )
            conn.execute(
                t.criterion_scores.insert(),
                [
                    {
                        "tenant": tenant,
                        "external_id": external_id,
                        "criterion": c["id"],
                        "score": c["score"],
                        "weight": c["weight"],
                    }
                    for c in scores["criteria"]
                ],
            )

    def analysis(self, tenant: str, external_id: str) -> dict | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(t.analyses.c.record).where(
                    t.analyses.c.tenant == tenant, t.analyses.c.external_id == external_id
                )
            ).scalar_one_or_none()

    def analyses_frame(self, tenant: str):
        import pandas as pd

        query = sa.select(
            t.analyses.c.external_id,
            t.analyses.c.call_day,
            t.analyses.c.operator,
            t.analyses.c.total,
            t.analyses.c.cost_usd,
            t.analyses.c.record,
        ).where(t.analyses.c.tenant == tenant)
        with self.engine.connect() as conn:
            return pd.DataFrame(
                conn.execute(query).mappings().all(),
                columns=["external_id", "call_day", "operator", "total", "cost_usd", "record"],
            )

    def criterion_frame(self, tenant: str):
        import pandas as pd

        query = (
            sa.select(
                t.criterion_scores.c.external_id,
                t.criterion_scores.c.criterion,
                t.criterion_scores.c.score,
                t.analyses.c.call_day,
                t.analyses.c.operator,
            )
            .join(
                t.analyses,
                sa.and_(
                    t.analyses.c.tenant == t.criterion_scores.c.tenant,
                    t.analyses.c.external_id == t.criterion_scores.c.external_id,
                ),
            )
            .where(t.criterion_scores.c.tenant == tenant)
        )
        with self.engine.connect() as conn:
            return pd.DataFrame(
                conn.execute(query).mappings().all(),
                columns=["external_id", "criterion", "score", "call_day", "operator"],
            )

    # aggregates ----------------------------------------------------------------------------
    def replace_daily_aggregates(
        self, tenant: str, calls_rows: list[dict], criterion_rows: list[dict]
    ) -> None:
        """Swap a tenant's aggregate rows in one transaction (readers never see half)."""
        now = utcnow()
        with self.engine.begin() as conn:
            for table in (t.daily_aggregates, t.daily_criterion_aggregates):
                conn.execute(table.delete().where(table.c.tenant == tenant))
            if calls_rows:
                conn.execute(
                    t.daily_aggregates.insert(),
                    [{**r, "tenant": tenant, "updated_at": now} for r in calls_rows],
                )
            if criterion_rows:
                conn.execute(
                    t.daily_criterion_aggregates.insert(),
                    [{**r, "tenant": tenant, "updated_at": now} for r in criterion_rows],
                )

    def daily_aggregates(self, tenant: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    sa.select(t.daily_aggregates)
                    .where(t.daily_aggregates.c.tenant == tenant)
                    .order_by(t.daily_aggregates.c.day, t.daily_aggregates.c.operator)
                ).mappings()
            ]

    def daily_criterion_aggregates(self, tenant: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    sa.select(t.daily_criterion_aggregates)
                    .where(t.daily_criterion_aggregates.c.tenant == tenant)
                    .order_by(
                        t.daily_criterion_aggregates.c.day,
                        t.daily_criterion_aggregates.c.operator,
                        t.daily_criterion_aggregates.c.criterion,
                    )
                ).mappings()
            ]
