"""The warehouse: idempotent reads and writes of callqa's tables, on SQLite or PostgreSQL.

Every query is scoped to one tenant; the two methods the sensors use across tenants
(`staged_calls_after`, `latest_analysis_times`) return each row with its own tenant.
All of callqa's SQL lives in this package: assets and sensors call these methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from callqa.calls.record import weakest_index
from callqa.storage import tables as t
from callqa.storage import views
from callqa.storage.pushbacks import PushbackQueries
from callqa.storage.sql import _as_utc, _upsert, utcnow
from callqa.storage.staging import StagingQueries

ALL_OPERATORS = "*"
_MIGRATED: set[str] = set()  # database URLs brought to the head revision by this process


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


class Warehouse(StagingQueries, PushbackQueries):
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

    def latest_analysis_times(self) -> dict[str, datetime]:
        """When each tenant's analyses last changed (what the aggregates sensor watches)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.analyses.c.tenant, sa.func.max(t.analyses.c.updated_at)).group_by(
                    t.analyses.c.tenant
                )
            ).all()
        return {tenant: ts for tenant, ts in rows}

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

    # tenant report -------------------------------------------------------------------------
    @staticmethod
    def _in_range(column: sa.ColumnElement, date_from: date | None, date_to: date | None) -> list:
        """Conditions for an inclusive day range; an open end adds none."""
        return [
            *([column >= date_from] if date_from is not None else []),
            *([column <= date_to] if date_to is not None else []),
        ]

    def report_analyses(
        self,
        tenant: str,
        date_from: date | None = None,
        date_to: date | None = None,
        *,
        external_ids: Iterable[str] | None = None,
        batch_size: int = 500,
    ) -> Iterator[dict]:
        """A tenant's analyses with their full records, call day within [date_from, date_to]
        (and, given `external_ids`, only those calls), oldest first. Streamed in batches, so a
        report over many calls keeps little in memory; the connection stays open until the
        iterator is exhausted or closed."""
        a = t.analyses
        only = [] if external_ids is None else [a.c.external_id.in_(list(external_ids))]
        query = (
            sa.select(
                a.c.external_id,
                a.c.call_day,
                a.c.operator,
                a.c.category,
                a.c.total,
                a.c.weakest_criterion,
                a.c.summary,
                a.c.cost_usd,
                a.c.record,
            )
            .where(a.c.tenant == tenant, *self._in_range(a.c.call_day, date_from, date_to), *only)
            .order_by(a.c.call_day, a.c.external_id)
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch_size).execute(query).mappings()
            for row in result:
                yield dict(row)

    def report_daily_aggregates(
        self, tenant: str, date_from: date | None = None, date_to: date | None = None
    ) -> list[dict]:
        """`daily_aggregates` rows (team '*' and per operator) with day within the range."""
        d = t.daily_aggregates
        query = (
            sa.select(
                d.c.day, d.c.operator, d.c.calls, d.c.mean_total, d.c.cost_usd, d.c.updated_at
            )
            .where(d.c.tenant == tenant, *self._in_range(d.c.day, date_from, date_to))
            .order_by(d.c.day, d.c.operator)
        )
        with self.engine.connect() as conn:
            return [
                {**r, "updated_at": _as_utc(r["updated_at"])}
                for r in conn.execute(query).mappings()
            ]

    def report_daily_criterion_aggregates(
        self, tenant: str, date_from: date | None = None, date_to: date | None = None
    ) -> list[dict]:
        """`daily_criterion_aggregates` rows (team '*' and per operator) within the range."""
        d = t.daily_criterion_aggregates
        query = (
            sa.select(d.c.day, d.c.operator, d.c.criterion, d.c.calls, d.c.mean_score)
            .where(d.c.tenant == tenant, *self._in_range(d.c.day, date_from, date_to))
            .order_by(d.c.day, d.c.operator, d.c.criterion)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # analyst views (migration 0002; columns in docs/data-dictionary.md) ---------------------
    def call_scores(
        self, tenant: str, date_from: date | None = None, date_to: date | None = None
    ) -> list[dict]:
        """`call_scores` rows (one per analysed call, a column per sales-default criterion)
        with call day within [date_from, date_to] (an open end is unbounded), oldest first."""
        cs = views.call_scores
        query = sa.select(cs).where(cs.c.tenant == tenant)
        if date_from is not None:
            query = query.where(cs.c.call_day >= date_from)
        if date_to is not None:
            query = query.where(cs.c.call_day <= date_to)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(cs.c.call_day, cs.c.external_id)).mappings()
            return [
                {
                    **r,
                    "started_at": _as_utc(r["started_at"]),
                    "analysed_at": _as_utc(r["analysed_at"]),
                }
                for r in rows
            ]

    def other_criterion_scores(
        self, tenant: str, date_from: date | None = None, date_to: date | None = None
    ) -> list[dict]:
        """Scores of the criteria that have no column in `call_scores` (criteria of presets
        other than sales-default): external_id, criterion, score, for the same calls."""
        s, a = t.criterion_scores, t.analyses
        query = (
            sa.select(s.c.external_id, s.c.criterion, s.c.score)
            .join(a, sa.and_(a.c.tenant == s.c.tenant, a.c.external_id == s.c.external_id))
            .where(s.c.tenant == tenant, s.c.criterion.not_in(views.WIDE_CRITERIA))
        )
        if date_from is not None:
            query = query.where(a.c.call_day >= date_from)
        if date_to is not None:
            query = query.where(a.c.call_day <= date_to)
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(query.order_by(s.c.external_id, s.c.criterion)).mappings()
            ]

    # backfills -----------------------------------------------------------------------------
    def calls_for_backfill(
        self,
        tenant: str,
        *,
        day_from: date | None = None,
        day_to: date | None = None,
        operators: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
    ) -> list[dict]:
        """A tenant's calls to re-process, oldest first: every call the warehouse knows
        (`staged_calls`, in any state), filtered by call day (its start time, or when it was
        staged if that is unknown; UTC, both ends inclusive), operator and staging status.
        Each row: external_id, operator, status, error, started_at, staged_at."""
        from datetime import timedelta

        s = t.staged_calls
        when = sa.func.coalesce(s.c.started_at, s.c.staged_at)
        query = sa.select(
            s.c.external_id, s.c.operator, s.c.status, s.c.error, s.c.started_at, s.c.staged_at
        ).where(s.c.tenant == tenant)
        if day_from is not None:
            query = query.where(when >= datetime.combine(day_from, datetime.min.time(), UTC))
        if day_to is not None:
            end = datetime.combine(day_to + timedelta(days=1), datetime.min.time(), UTC)
            query = query.where(when < end)
        if operators is not None:
            query = query.where(s.c.operator.in_(list(operators)))
        if statuses is not None:
            query = query.where(s.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(when, s.c.id)).mappings()
            return [
                {
                    **r,
                    "started_at": _as_utc(r["started_at"]),
                    "staged_at": _as_utc(r["staged_at"]),
                }
                for r in rows
            ]

    # partition retention (callqa/retention.py) ---------------------------------------------
    def retirable_partition_keys(
        self,
        tenant: str,
        before: date,
        *,
        among: Iterable[str] | None = None,
        after: str | None = None,
        limit: int = 500,
    ) -> list[str]:
        """One page (at most `limit`) of the `calls` partition keys of a tenant's calls whose
        results live in the warehouse: an analysis is stored and the call's day (its start, or
        when raw_audio last ran if the start is unknown: `analyses.call_day`, indexed) is
        before `before`. Ordered by call id; the next page starts `after` the last id seen.
        `among` limits the page to those call ids (the partitions that still exist)."""
        from callqa.calls.keys import make_key

        a = t.analyses
        query = sa.select(a.c.external_id).where(a.c.tenant == tenant, a.c.call_day < before)
        if among is not None:
            query = query.where(a.c.external_id.in_(list(among)))
        if after is not None:
            query = query.where(a.c.external_id > after)
        with self.engine.connect() as conn:
            ids = conn.execute(query.order_by(a.c.external_id).limit(limit)).scalars().all()
        return [make_key(tenant, external_id).partition_key for external_id in ids]
