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
    sa.Column(
        "cost_usd", sa.Float, doc="speech-to-text cost (stt rows): API list price, 0 on-site"
    ),
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
    sa.Column("variant", sa.String(64), nullable=False, server_default="control"),
    sa.Column("total", sa.Float, nullable=False),
    sa.Column("weakest_criterion", sa.String(64), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("evidence_rate", sa.Float, doc="share of quotes verified; NULL if none cited"),
    sa.Column("record", JSONType, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "external_id"),
    sa.Index(None, "tenant", "call_day"),
)

# Every result a call was ever scored to, valid or not, one row per (prompt version,
# variant, scorer, model): re-scoring with a new preset keeps the older results queryable
# by version, and an invalid final result is kept with its errors (it never reaches
# `analyses` or the aggregates).
analysis_versions = sa.Table(
    "analysis_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("preset", sa.String(64), nullable=False),
    sa.Column("prompt_version", sa.String(32), nullable=False),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("scorer", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("valid", sa.Boolean, nullable=False),
    sa.Column("total", sa.Float, doc="NULL when invalid"),
    sa.Column("errors", sa.Text, doc="why the result is invalid; NULL when valid"),
    sa.Column("record", JSONType, doc="the analysis record; NULL when invalid"),
    sa.Column("evidence_quotes", sa.Integer, nullable=False),
    sa.Column("evidence_verified", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("scored_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "external_id", "prompt_version", "variant", "scorer", "model"),
    sa.Index(None, "tenant", "preset", "variant"),
)

call_patterns = sa.Table(
    "call_patterns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("pattern", sa.String(64), nullable=False, doc="pattern id from the preset"),
    sa.Column("kind", sa.String(16), nullable=False, doc="objection, competitor, intent, ..."),
    sa.Column("speaker", sa.String(16), nullable=False),
    sa.Column("quote", sa.Text, nullable=False),
    sa.Column("start_s", sa.Float, nullable=False),
    sa.Index(None, "tenant", "external_id"),
)

human_grades = sa.Table(
    "human_grades",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *_call_columns(),
    sa.Column("criterion", sa.String(64), nullable=False),
    sa.Column("grader", sa.String(128), nullable=False),
    sa.Column("score", sa.Integer, doc="NULL = the grader marked it N/A"),
    sa.Column("loaded_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "external_id", "criterion", "grader"),
)

grader_agreement = sa.Table(
    "grader_agreement",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("comparison", sa.String(16), nullable=False, doc="model-human or human-human"),
    sa.Column("preset", sa.String(64), nullable=False),
    sa.Column("prompt_version", sa.String(32), nullable=False, doc="'*' for human-human"),
    sa.Column("variant", sa.String(64), nullable=False, doc="'*' for human-human"),
    sa.Column("criterion", sa.String(64), nullable=False, doc="'*' = all criteria pooled"),
    sa.Column("pairs", sa.Integer, nullable=False),
    sa.Column("exact", sa.Float),
    sa.Column("within_one", sa.Float),
    sa.Column("qwk", sa.Float, doc="quadratic-weighted Cohen's kappa"),
    sa.Column("spearman", sa.Float),
    sa.Column("bias", sa.Float, doc="mean (model or first grader) minus mean (human)"),
    sa.Column("computed_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "comparison", "preset", "prompt_version", "variant", "criterion"),
)

variant_comparison = sa.Table(
    "variant_comparison",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("preset", sa.String(64), nullable=False),
    sa.Column("prompt_version", sa.String(32), nullable=False),
    sa.Column("variant", sa.String(64), nullable=False),
    sa.Column("calls", sa.Integer, nullable=False, doc="calls scored (valid or not)"),
    sa.Column("valid_rate", sa.Float, nullable=False),
    sa.Column("mean_total", sa.Float),
    sa.Column("std_total", sa.Float),
    sa.Column("p10_total", sa.Float),
    sa.Column("p90_total", sa.Float),
    sa.Column("mean_latency_ms", sa.Float, nullable=False),
    sa.Column("mean_cost_usd", sa.Float, nullable=False),
    sa.Column("evidence_rate", sa.Float),
    sa.Column("computed_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "preset", "prompt_version", "variant"),
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
    sa.Column("llm_cost_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("speech_cost_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column(
        "unpriced_calls",
        sa.Integer,
        nullable=False,
        server_default="0",
        doc="calls whose cost is not fully known: an LLM or speech model without a price",
    ),
    sa.Column("mean_evidence_rate", sa.Float),
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

daily_pattern_aggregates = sa.Table(
    "daily_pattern_aggregates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("operator", sa.String(128), nullable=False, doc="'*' = all operators"),
    sa.Column("pattern", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("calls", sa.Integer, nullable=False, doc="calls in which it was found"),
    sa.Column("mentions", sa.Integer, nullable=False),
    sa.Column("share_of_calls", sa.Float, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.UniqueConstraint("tenant", "day", "operator", "pattern"),
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
