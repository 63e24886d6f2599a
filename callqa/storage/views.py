"""The analyst views, described (with column types) for Python readers.

Migration 0002 creates the views (its SQL, per dialect, is frozen there; 0004 and 0005
re-create some of them); docs/data-dictionary.md documents every column. These `Table`
objects live in their own `MetaData`, so `create_all` and Alembic's autogenerate never
treat them as tables; a test keeps them in step with the views in the database. Select
from them like from any table: `sa.select(views.call_scores).where(views.call_scores.c.tenant
== tenant)`; the types make SQLite hand back dates and booleans as PostgreSQL does (its
datetimes come back naive, in UTC).
"""

from __future__ import annotations

import sqlalchemy as sa

from callqa.storage.tables import Timestamp

metadata = sa.MetaData()

# The bundled sales-default criteria: each has its own column in call_scores.
WIDE_CRITERIA = (
    "greeting",
    "needs_discovery",
    "presentation",
    "objection_handling",
    "closing",
    "tone",
)


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.Text)


call_scores = sa.Table(
    "call_scores",
    metadata,
    _text("tenant"),
    _text("external_id"),
    sa.Column("call_day", sa.Date),
    sa.Column("week_start", sa.Date),
    sa.Column("started_at", Timestamp),
    _text("operator"),
    _text("category"),
    _text("preset"),
    _text("scorer"),
    _text("model"),
    _text("prompt_version"),
    _text("variant"),
    sa.Column("duration_s", sa.Float),
    sa.Column("total", sa.Float),
    sa.Column("evidence_rate", sa.Float),
    *(sa.Column(c, sa.Integer) for c in WIDE_CRITERIA),
    _text("weakest_criterion"),
    _text("status"),
    _text("error"),
    sa.Column("llm_cost_usd", sa.Float),
    sa.Column("llm_spend_usd", sa.Float),
    sa.Column("llm_attempts", sa.Integer),
    sa.Column("llm_tokens", sa.Integer),
    sa.Column("speech_cost_usd", sa.Float),
    sa.Column("cost_usd", sa.Float),
    sa.Column("analysed_at", Timestamp),
)

criterion_evidence = sa.Table(
    "criterion_evidence",
    metadata,
    _text("tenant"),
    _text("external_id"),
    sa.Column("call_day", sa.Date),
    _text("operator"),
    _text("category"),
    _text("criterion"),
    _text("criterion_name"),
    sa.Column("score", sa.Integer),
    sa.Column("weight", sa.Float),
    _text("rationale"),
    sa.Column("evidence_index", sa.Integer),
    _text("quote"),
    sa.Column("start_s", sa.Float),
    _text("speaker"),
)

operator_criterion_weekly = sa.Table(
    "operator_criterion_weekly",
    metadata,
    _text("tenant"),
    sa.Column("week_start", sa.Date),
    _text("operator"),
    _text("criterion"),
    sa.Column("calls", sa.Integer),
    sa.Column("mean_score", sa.Float),
    sa.Column("min_score", sa.Integer),
    sa.Column("max_score", sa.Integer),
)

pattern_weekly = sa.Table(
    "pattern_weekly",
    metadata,
    _text("tenant"),
    sa.Column("week_start", sa.Date),
    _text("operator"),
    _text("pattern"),
    sa.Column("occurrences", sa.Integer),
    sa.Column("calls_with_pattern", sa.Integer),
    sa.Column("calls", sa.Integer),
    sa.Column("call_share", sa.Float),
)

cost_daily = sa.Table(
    "cost_daily",
    metadata,
    _text("tenant"),
    sa.Column("day", sa.Date),
    sa.Column("calls", sa.Integer),
    sa.Column("audio_s", sa.Float),
    sa.Column("llm_cost_usd", sa.Float),
    sa.Column("llm_spend_usd", sa.Float),
    sa.Column("speech_cost_usd", sa.Float),
    sa.Column("cost_usd", sa.Float),
    sa.Column("cost_per_call_usd", sa.Float),
)

calls_by_status = sa.Table(
    "calls_by_status",
    metadata,
    _text("tenant"),
    _text("external_id"),
    _text("status"),
    _text("error"),
    _text("failed_stage"),
    _text("source"),
    _text("operator"),
    _text("category"),
    sa.Column("started_at", Timestamp),
    sa.Column("staged_at", Timestamp),
    sa.Column("updated_at", Timestamp),
    sa.Column("has_analysis", sa.Boolean),
    sa.Column("total", sa.Float),
)

ALL = (
    call_scores,
    criterion_evidence,
    operator_criterion_weekly,
    pattern_weekly,
    cost_daily,
    calls_by_status,
)
