"""Warehouse tables (SQLAlchemy Core). Changes here need a migration in `migrations/`.

Every per-call table is keyed by (tenant, external_id): re-materializing a call
updates its rows, never duplicates them. Analysts query these tables with plain SQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def _call_columns() -> list[sa.Column]:
    return [
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
    ]


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("config", JSONType, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

staged_calls = sa.Table(
    "staged_calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("source", sa.String(32), nullable=False, doc="file, crm or webhook"),
    sa.Column("source_uri", sa.Text, nullable=False),
    sa.Column("category", sa.String(64)),
    sa.Column("operator", sa.String(128)),
    sa.Column("started_at", Timestamp),
    sa.Column(
        "status",
        sa.String(16),
        nullable=False,
        doc="staged, approved, rejected, queued, processed, failed",
    ),
    sa.Column("error", sa.Text),
    sa.Column("staged_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("duration_s", sa.Float),
    sa.Column("direction", sa.String(16), doc="inbound or outbound, where the CRM says"),
    sa.Column("links", JSONType, doc="CRM cards the result goes back to, e.g. {'leads': '1'}"),
    sa.UniqueConstraint("tenant", "external_id"),
    sa.Index(None, "status"),
    sa.Index("ix_staged_calls_tenant_status", "tenant", "status"),
)

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("partition_key", sa.String(200), nullable=False),
    sa.Column("audio_uri", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("codec", sa.String(32), nullable=False),
    sa.Column("container", sa.String(64), nullable=False),
    sa.Column("channels", sa.Integer, nullable=False),
    sa.Column("sample_rate", sa.Integer, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("category", sa.String(64)),
    sa.Column("operator", sa.String(128)),
    sa.Column("started_at", Timestamp),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "external_id"),
)

transcripts = sa.Table(
    "transcripts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("stage", sa.String(16), nullable=False, doc="stt (per channel) or diarized"),
    sa.Column("model", sa.String(200)),
    sa.Column("language", sa.String(16)),
    sa.Column("word_count", sa.Integer, nullable=False),
    sa.Column("data", JSONType, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "external_id", "stage"),
)

analyses = sa.Table(
    "analyses",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("call_day", sa.Date, nullable=False),
    sa.Column("operator", sa.String(128)),
    sa.Column("category", sa.String(64)),
    sa.Column("preset", sa.String(64), nullable=False),
    sa.Column("prompt_version", sa.String(32), nullable=False),
    sa.Column("scorer", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("total", sa.Float, nullable=False),
    sa.Column("weakest_criterion", sa.String(64), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("record", JSONType, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "external_id"),
    sa.Index(None, "tenant", "call_day"),
)

criterion_scores = sa.Table(
    "criterion_scores",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("criterion", sa.String(64), nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.UniqueConstraint("tenant", "external_id", "criterion"),
)

scoring_attempts = sa.Table(
    "scoring_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("run_id", sa.String(64)),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("scorer", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("prompt_version", sa.String(32), nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("raw_output", sa.Text),
    sa.Column("valid", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index(None, "tenant", "external_id"),
)

daily_aggregates = sa.Table(
    "daily_aggregates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("operator", sa.String(128), nullable=False, doc="'*' = all operators"),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("mean_total", sa.Float, nullable=False),
    sa.Column("min_total", sa.Float, nullable=False),
    sa.Column("max_total", sa.Float, nullable=False),
    sa.Column("audio_s", sa.Float, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("mean_operator_talk_share", sa.Float, nullable=False),
    sa.Column("mean_silence_ratio", sa.Float, nullable=False),
    sa.Column("interruptions", sa.Integer, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "day", "operator"),
)

daily_criterion_aggregates = sa.Table(
    "daily_criterion_aggregates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("operator", sa.String(128), nullable=False, doc="'*' = all operators"),
    sa.Column("criterion", sa.String(64), nullable=False),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("mean_score", sa.Float, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "day", "operator", "criterion"),
)

crm_pushbacks = sa.Table(
    "crm_pushbacks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("adapter", sa.String(32), nullable=False),
    sa.Column("note_ids", JSONType, nullable=False, doc="CRM card -> note id written there"),
    sa.Column("total", sa.Float, nullable=False),
    sa.Column("report_url", sa.Text, nullable=False),
    sa.Column("pushed_at", Timestamp, nullable=False),
    sa.Column("alerted_at", Timestamp, doc="when the low-score alert went out; once per call"),
    sa.Column("alert_destination", sa.String(32)),
    sa.UniqueConstraint("tenant", "external_id"),
)
