"""The warehouse: idempotent reads and writes of callqa's tables, on SQLite or PostgreSQL.

Every query is scoped to one tenant; the two methods the sensors use across tenants
(`staged_calls_after`, `latest_analysis_times`) return each row with its own tenant.
All of callqa's SQL lives in this package: assets and sensors call these methods.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from callqa.calls.record import weakest_index
from callqa.config.models import CONTROL
from callqa.storage import tables as t
from callqa.storage import views
from callqa.storage.grades import GradeQueries
from callqa.storage.pushbacks import PushbackQueries
from callqa.storage.sql import _as_utc, _upsert, utcnow
from callqa.storage.staging import StagingQueries

ALL_OPERATORS = "*"
OTHER_KIND = "other"  # a pattern's kind when the caller did not say
# One stored result per call and version (analysis_versions' unique key).
VERSION_KEY = ("tenant", "external_id", "prompt_version", "variant", "scorer", "model")
# Columns of `Warehouse.analyses_frame`.
FRAME_COLUMNS = [
    "external_id",
    "call_day",
    "operator",
    "total",
    "llm_cost_usd",
    "cost_known",
    "speech_cost_usd",
    "evidence_rate",
    "record",
]
_MIGRATED: set[str] = set()  # database URLs brought to the head revision by this process


def _insert(conn: sa.Connection):
    """The dialect's INSERT construct (it has ON CONFLICT)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


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


class Warehouse(StagingQueries, PushbackQueries, GradeQueries):
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
        cost_usd: float | None = None,
    ) -> None:
        """`cost_usd`: what producing this transcript cost (speech-to-text, on the stt row);
        None when unknown (a transcription API without a known price)."""
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
                        "cost_usd": cost_usd,
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
        """Append-only: every scoring attempt is kept, valid or not. Keys the table has no
        column for (`Attempt.cost_known`: the record keeps it) are left out."""
        columns = set(t.scoring_attempts.c.keys())
        rows = [
            {
                **{k: v for k, v in a.items() if k in columns},
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

    def save_analysis(
        self,
        record: dict,
        call_day: date,
        run_id: str | None = None,
        *,
        pattern_kinds: Mapping[str, str] | None = None,
    ) -> None:
        """Publish a valid analysis record: its `analyses` row, its criterion scores (N/A
        criteria have none), its patterns and its `analysis_versions` row, in one
        transaction. `pattern_kinds` maps the preset's pattern ids to their kinds
        (`{p.id: p.kind for p in preset.patterns}`); a pattern it does not name is stored
        with kind 'other' (the record carries pattern ids only)."""
        call, scores, scoring = record["call"], record["scores"], record["scoring"]
        tenant, external_id = call["tenant"], call["external_id"]
        weakest = scores["criteria"][weakest_index(scores["criteria"])]
        evidence = scoring.get("evidence") or {}
        quotes, verified = int(evidence.get("quotes", 0)), int(evidence.get("verified", 0))
        variant = scoring.get("variant") or CONTROL
        kinds = pattern_kinds or {}
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
                        "variant": variant,
                        "total": scores["total"],
                        "weakest_criterion": weakest["id"],
                        "summary": record["summary"],
                        "cost_usd": scoring["cost_usd"],
                        "evidence_rate": round(verified / quotes, 4) if quotes else None,
                        "record": record,
                        "updated_at": now,
                    }
                ],
                ["tenant", "external_id"],
            )
            # A changed preset may drop criteria or patterns: replace the call's rows whole.
            for table in (t.criterion_scores, t.call_patterns):
                conn.execute(
                    table.delete().where(
                        table.c.tenant == tenant, table.c.external_id == external_id
                    )
                )
            scored = [c for c in scores["criteria"] if c["score"] is not None]
            if scored:
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
                        for c in scored
                    ],
                )
            patterns = record.get("patterns") or []
            if patterns:
                conn.execute(
                    t.call_patterns.insert(),
                    [
                        {
                            "tenant": tenant,
                            "external_id": external_id,
                            "pattern": p["type"],
                            "kind": kinds.get(p["type"], OTHER_KIND),
                            "speaker": p.get("speaker") or "any",
                            "quote": p.get("quote", ""),
                            "start_s": p.get("start", 0.0),
                        }
                        for p in patterns
                    ],
                )
            _upsert(
                conn,
                t.analysis_versions,
                [
                    {
                        "tenant": tenant,
                        "external_id": external_id,
                        "preset": scoring["preset"],
                        "prompt_version": scoring["prompt_version"],
                        "variant": variant,
                        "scorer": scoring["scorer"],
                        "model": scoring["model"] or "",
                        "valid": True,
                        "total": scores["total"],
                        "errors": None,
                        "record": record,
                        "evidence_quotes": quotes,
                        "evidence_verified": verified,
                        "attempts": scoring.get("attempts", 1),
                        "cost_usd": scoring["cost_usd"],
                        "latency_ms": scoring.get("latency_ms", 0.0),
                        "run_id": run_id,
                        "scored_at": now,
                    }
                ],
                VERSION_KEY,
            )

    def save_invalid_analysis(
        self,
        tenant: str,
        external_id: str,
        *,
        preset: str,
        prompt_version: str,
        variant: str,
        scorer: str,
        model: str | None,
        errors: str,
        attempts: int,
        cost_usd: float,
        latency_ms: float,
        run_id: str | None,
    ) -> bool:
        """Keep an invalid final result, with its errors, in `analysis_versions` only: it
        never reaches `analyses` (or the aggregates). It replaces an earlier invalid result
        of the same version, never a valid one (the call's published analysis stays what
        that version gave). True if the row was written."""
        row = {
            "tenant": tenant,
            "external_id": external_id,
            "preset": preset,
            "prompt_version": prompt_version,
            "variant": variant,
            "scorer": scorer,
            "model": model or "",
            "valid": False,
            "total": None,
            "errors": errors,
            "record": None,
            "evidence_quotes": 0,
            "evidence_verified": 0,
            "attempts": attempts,
            "cost_usd": cost_usd,
            "latency_ms": latency_ms,
            "run_id": run_id,
            "scored_at": utcnow(),
        }
        with self.engine.begin() as conn:
            stmt = _insert(conn)(t.analysis_versions).values(row)
            stmt = stmt.on_conflict_do_update(
                index_elements=list(VERSION_KEY),
                set_={c: stmt.excluded[c] for c in row if c not in VERSION_KEY},
                where=t.analysis_versions.c.valid == sa.false(),
            )
            # A row comes back only if one was inserted or updated.
            return conn.execute(stmt.returning(t.analysis_versions.c.id)).first() is not None

    def analysis_versions(
        self, tenant: str, external_id: str | None = None, *, with_record: bool = True
    ) -> list[dict]:
        """Every stored result of a tenant's calls (or one call), valid or invalid, by call
        and time scored; without `with_record`, the rows leave the (large) record out."""
        v = t.analysis_versions
        columns = [c for c in v.columns if with_record or c.name != "record"]
        query = sa.select(*columns).where(v.c.tenant == tenant)
        if external_id is not None:
            query = query.where(v.c.external_id == external_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(v.c.external_id, v.c.scored_at, v.c.id))
            return [{**r, "scored_at": _as_utc(r["scored_at"])} for r in rows.mappings()]

    def stale_analyses(
        self, tenant: str, current_versions: Mapping[str, str | Collection[str]]
    ) -> list[str]:
        """Calls whose published analysis was scored with a prompt version that is not
        (one of) its preset's current one(s), by call id. `current_versions`: preset id ->
        its current prompt version, or the set of them when the preset has A/B variants
        (each variant scores with its own version). Presets not named are left out."""
        a = t.analyses
        current = {
            preset: {versions} if isinstance(versions, str) else set(versions)
            for preset, versions in current_versions.items()
        }
        if not current:
            return []
        query = sa.select(a.c.external_id).where(
            a.c.tenant == tenant,
            sa.or_(
                *(
                    sa.and_(a.c.preset == preset, a.c.prompt_version.not_in(sorted(versions)))
                    for preset, versions in current.items()
                )
            ),
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(a.c.external_id)).scalars())

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
        """One row per analysed call: what the daily aggregates need. `llm_cost_usd` is the
        scoring cost, `cost_known` False when the LLM had no known price, `speech_cost_usd`
        the stt transcript's cost (NaN when unknown), `record` the analysis record."""
        import pandas as pd

        a, tr = t.analyses, t.transcripts
        query = (
            sa.select(
                a.c.external_id,
                a.c.call_day,
                a.c.operator,
                a.c.total,
                a.c.cost_usd.label("llm_cost_usd"),
                tr.c.cost_usd.label("speech_cost_usd"),
                a.c.evidence_rate,
                a.c.record,
            )
            .outerjoin(
                tr,
                sa.and_(
                    tr.c.tenant == a.c.tenant,
                    tr.c.external_id == a.c.external_id,
                    tr.c.stage == "stt",
                ),
            )
            .where(a.c.tenant == tenant)
        )
        with self.engine.connect() as conn:
            frame = pd.DataFrame(
                conn.execute(query).mappings().all(),
                columns=[c for c in FRAME_COLUMNS if c != "cost_known"],
            )
        frame["cost_known"] = [
            bool((r.get("scoring") or {}).get("cost_known", True)) for r in frame["record"]
        ]
        for column in ("total", "llm_cost_usd", "speech_cost_usd", "evidence_rate"):
            frame[column] = frame[column].astype(float)
        return frame[FRAME_COLUMNS]

    def criterion_frame(self, tenant: str):
        """One row per scored criterion of each analysed call (N/A criteria have none)."""
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
            .where(t.criterion_scores.c.tenant == tenant, t.criterion_scores.c.score.is_not(None))
        )
        with self.engine.connect() as conn:
            return pd.DataFrame(
                conn.execute(query).mappings().all(),
                columns=["external_id", "criterion", "score", "call_day", "operator"],
            )

    def pattern_frame(self, tenant: str):
        """One row per pattern mention in each analysed call, with the call's day and
        operator."""
        import pandas as pd

        p, a = t.call_patterns, t.analyses
        query = (
            sa.select(p.c.external_id, p.c.pattern, p.c.kind, a.c.call_day, a.c.operator)
            .join(a, sa.and_(a.c.tenant == p.c.tenant, a.c.external_id == p.c.external_id))
            .where(p.c.tenant == tenant)
        )
        with self.engine.connect() as conn:
            return pd.DataFrame(
                conn.execute(query).mappings().all(),
                columns=["external_id", "pattern", "kind", "call_day", "operator"],
            )

    # aggregates ----------------------------------------------------------------------------
    def replace_daily_aggregates(
        self,
        tenant: str,
        calls_rows: list[dict],
        criterion_rows: list[dict],
        pattern_rows: Sequence[dict] = (),
    ) -> None:
        """Swap a tenant's rows of the three aggregate tables in one transaction (readers
        never see half)."""
        now = utcnow()
        with self.engine.begin() as conn:
            for table, rows in (
                (t.daily_aggregates, calls_rows),
                (t.daily_criterion_aggregates, criterion_rows),
                (t.daily_pattern_aggregates, pattern_rows),
            ):
                conn.execute(table.delete().where(table.c.tenant == tenant))
                if rows:
                    conn.execute(
                        table.insert(), [{**r, "tenant": tenant, "updated_at": now} for r in rows]
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

    def daily_pattern_aggregates(self, tenant: str) -> list[dict]:
        d = t.daily_pattern_aggregates
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    sa.select(d)
                    .where(d.c.tenant == tenant)
                    .order_by(d.c.day, d.c.operator, d.c.pattern)
                ).mappings()
            ]

    # variant comparison --------------------------------------------------------------------
    def replace_variant_comparison(self, tenant: str, rows: Sequence[dict]) -> None:
        """Swap a tenant's `variant_comparison` rows in one transaction."""
        v = t.variant_comparison
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(v.delete().where(v.c.tenant == tenant))
            if rows:
                conn.execute(
                    v.insert(), [{**r, "tenant": tenant, "computed_at": now} for r in rows]
                )

    def variant_comparison(self, tenant: str) -> list[dict]:
        v = t.variant_comparison
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(v)
                .where(v.c.tenant == tenant)
                .order_by(v.c.preset, v.c.prompt_version, v.c.variant)
            ).mappings()
            return [{**r, "computed_at": _as_utc(r["computed_at"])} for r in rows]

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

    # analyst views (migrations 0002, 0004, 0005; columns in docs/data-dictionary.md) ----------
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
