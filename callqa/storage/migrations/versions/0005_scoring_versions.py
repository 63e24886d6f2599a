"""scoring versions, invalid results, patterns, human grades, variants, costs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 10:00:00

New tables:
- `analysis_versions`: every result a call was scored to, valid or invalid, one row per
  (prompt version, variant, scorer, model), so re-scored calls keep their older results
  and an invalid final result is kept with its errors (it never reaches `analyses`);
- `call_patterns`: the patterns found in each call (pattern id from the preset, its kind);
- `human_grades`, `grader_agreement`: analysts' scores and model/human agreement;
- `variant_comparison`: A/B variants of a preset side by side;
- `daily_pattern_aggregates`: patterns per tenant, day and operator.

New columns: `analyses.variant` and `.evidence_rate`, `transcripts.cost_usd` (speech-to-text
cost of the stt row), and the cost split, unpriced calls and evidence rate of
`daily_aggregates`.

Views re-created (SQL frozen here, per dialect, like 0002's):
- `call_scores`: `variant` and `evidence_rate` columns; `speech_cost_usd` is the call's stt
  transcript cost (NULL when unknown) and `cost_usd` = LLM + speech (the known part);
  criterion columns are NULL for criteria scored N/A (no `criterion_scores` row);
- `cost_daily`: the same speech cost, summed;
- `criterion_evidence`: `speaker` is the one the evidence cites (record schema 2.0, checked
  against the transcript when scored); older records' quotes are still looked up as before.

Existing analyses' patterns are copied into `call_patterns` (kind 'other': the records do
not say; the next scoring of the call writes the preset's kind).
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)

WIDE_CRITERIA = (
    "greeting",
    "needs_discovery",
    "presentation",
    "objection_handling",
    "closing",
    "tone",
)

FRAGMENTS = {
    "sqlite": {
        "week": "date(a.call_day, 'weekday 0', '-6 days')",
        "record_duration": "json_extract(a.record, '$.call.audio.duration_s')",
        "record_tokens": "json_extract(a.record, '$.scoring.tokens.total')",
        "lateral": False,
    },
    "postgresql": {
        "week": "a.call_day - (EXTRACT(ISODOW FROM a.call_day)::int - 1)",
        "record_duration": "(a.record -> 'call' -> 'audio' ->> 'duration_s')::float8",
        "record_tokens": "(a.record -> 'scoring' -> 'tokens' ->> 'total')::int",
        "lateral": True,
    },
}

# The call's speech-to-text row (unique per call and stage, so at most one).
STT_JOIN = """LEFT JOIN transcripts AS stt
        ON stt.tenant = a.tenant AND stt.external_id = a.external_id AND stt.stage = 'stt'"""


def _per_call(f: dict, table: str, columns: str, alias: str) -> str:
    """`a` (analyses) joined to an aggregate of `table`'s rows of the same call: LATERAL on
    PostgreSQL (looked up per call through the index), a grouped subquery on SQLite."""
    if f["lateral"]:
        return f"""CROSS JOIN LATERAL (
        SELECT {columns}
        FROM {table}
        WHERE {table}.tenant = a.tenant AND {table}.external_id = a.external_id
    ) AS {alias}"""
    return f"""LEFT JOIN (
        SELECT tenant, external_id, {columns}
        FROM {table}
        GROUP BY tenant, external_id
    ) AS {alias} ON {alias}.tenant = a.tenant AND {alias}.external_id = a.external_id"""


# N/A criteria have no criterion_scores row, so their column is NULL like a missing one.
PIVOT = ",\n            ".join(
    f"MAX(CASE WHEN criterion = '{c}' THEN score END) AS {c}" for c in WIDE_CRITERIA
)
SPEND = "SUM(cost_usd) AS spend_usd, COUNT(*) AS attempts"


def _call_scores(f: dict) -> str:
    wide = ", ".join(f"s.{c}" for c in WIDE_CRITERIA)
    return f"""
    SELECT
        a.tenant,
        a.external_id,
        a.call_day,
        {f["week"]} AS week_start,
        c.started_at,
        COALESCE(a.operator, 'unknown') AS operator,
        a.category,
        a.preset,
        a.scorer,
        a.model,
        a.prompt_version,
        a.variant,
        COALESCE(c.duration_s, {f["record_duration"]}) AS duration_s,
        a.total,
        a.evidence_rate,
        {wide},
        a.weakest_criterion,
        sc.status,
        sc.error,
        a.cost_usd AS llm_cost_usd,
        att.spend_usd AS llm_spend_usd,
        COALESCE(att.attempts, 0) AS llm_attempts,
        {f["record_tokens"]} AS llm_tokens,
        stt.cost_usd AS speech_cost_usd,
        a.cost_usd + COALESCE(stt.cost_usd, 0) AS cost_usd,
        a.updated_at AS analysed_at
    FROM analyses AS a
    LEFT JOIN calls AS c ON c.tenant = a.tenant AND c.external_id = a.external_id
    LEFT JOIN staged_calls AS sc ON sc.tenant = a.tenant AND sc.external_id = a.external_id
    {STT_JOIN}
    {_per_call(f, "criterion_scores", PIVOT, "s")}
    {_per_call(f, "scoring_attempts", SPEND, "att")}
    """


def _cost_daily(f: dict) -> str:
    return f"""
    SELECT
        a.tenant,
        a.call_day AS day,
        COUNT(*) AS calls,
        SUM(COALESCE(c.duration_s, {f["record_duration"]})) AS audio_s,
        SUM(a.cost_usd) AS llm_cost_usd,
        SUM(att.spend_usd) AS llm_spend_usd,
        SUM(stt.cost_usd) AS speech_cost_usd,
        SUM(a.cost_usd + COALESCE(stt.cost_usd, 0)) AS cost_usd,
        SUM(a.cost_usd + COALESCE(stt.cost_usd, 0)) / COUNT(*) AS cost_per_call_usd
    FROM analyses AS a
    LEFT JOIN calls AS c ON c.tenant = a.tenant AND c.external_id = a.external_id
    {STT_JOIN}
    {_per_call(f, "scoring_attempts", SPEND, "att")}
    GROUP BY a.tenant, a.call_day
    """


_CRITERION_EVIDENCE = {
    # One row per evidence quote; a criterion without evidence keeps one row with NULL quote.
    # speaker: the one the quote cites (records of schema 2.0); for older records, the
    # segment whose text contains the quote (case-insensitive), else the nearest by start.
    "sqlite": """
    SELECT
        a.tenant,
        a.external_id,
        a.call_day,
        COALESCE(a.operator, 'unknown') AS operator,
        a.category,
        json_extract(cr.value, '$.id') AS criterion,
        json_extract(cr.value, '$.name') AS criterion_name,
        json_extract(cr.value, '$.score') AS score,
        json_extract(cr.value, '$.weight') AS weight,
        json_extract(cr.value, '$.rationale') AS rationale,
        ev.key AS evidence_index,
        json_extract(ev.value, '$.quote') AS quote,
        json_extract(ev.value, '$.start') AS start_s,
        COALESCE(json_extract(ev.value, '$.speaker'), (
            -- SQLite cannot refer to the outer json_each (ev) in a subquery's ORDER BY:
            -- the sort keys are computed one level down.
            SELECT speaker
            FROM (
                SELECT
                    json_extract(seg.value, '$.speaker') AS speaker,
                    instr(
                        lower(json_extract(seg.value, '$.text')),
                        lower(json_extract(ev.value, '$.quote'))
                    ) = 0 AS no_text_match,
                    abs(
                        json_extract(seg.value, '$.start') - json_extract(ev.value, '$.start')
                    ) AS distance,
                    json_extract(seg.value, '$.start') AS segment_start
                FROM json_each(a.record, '$.transcript.segments') AS seg
                WHERE ev.value IS NOT NULL
            )
            ORDER BY no_text_match, distance, segment_start
            LIMIT 1
        )) AS speaker
    FROM analyses AS a
    JOIN json_each(a.record, '$.scores.criteria') AS cr
    LEFT JOIN json_each(cr.value, '$.evidence') AS ev
    """,
    "postgresql": """
    SELECT
        a.tenant,
        a.external_id,
        a.call_day,
        COALESCE(a.operator, 'unknown') AS operator,
        a.category,
        cr.value ->> 'id' AS criterion,
        cr.value ->> 'name' AS criterion_name,
        (cr.value ->> 'score')::int AS score,
        (cr.value ->> 'weight')::float8 AS weight,
        cr.value ->> 'rationale' AS rationale,
        (ev.n - 1)::int AS evidence_index,
        ev.value ->> 'quote' AS quote,
        (ev.value ->> 'start')::float8 AS start_s,
        COALESCE(ev.value ->> 'speaker', (
            SELECT seg.value ->> 'speaker'
            FROM jsonb_array_elements(a.record -> 'transcript' -> 'segments') AS seg(value)
            WHERE ev.value IS NOT NULL
            ORDER BY
                strpos(lower(seg.value ->> 'text'), lower(ev.value ->> 'quote')) = 0,
                abs((seg.value ->> 'start')::float8 - (ev.value ->> 'start')::float8),
                (seg.value ->> 'start')::float8
            LIMIT 1
        )) AS speaker
    FROM analyses AS a
    CROSS JOIN LATERAL jsonb_array_elements(a.record -> 'scores' -> 'criteria') AS cr(value)
    LEFT JOIN LATERAL jsonb_array_elements(cr.value -> 'evidence')
        WITH ORDINALITY AS ev(value, n) ON true
    """,
}

# Existing analyses' patterns into call_patterns (1.x records name no speaker: 'any').
_COPY_PATTERNS = {
    "sqlite": """
    INSERT INTO call_patterns (tenant, external_id, pattern, kind, speaker, quote, start_s)
    SELECT
        a.tenant,
        a.external_id,
        json_extract(pt.value, '$.type'),
        'other',
        COALESCE(json_extract(pt.value, '$.speaker'), 'any'),
        COALESCE(json_extract(pt.value, '$.quote'), ''),
        COALESCE(json_extract(pt.value, '$.start'), 0)
    FROM analyses AS a
    JOIN json_each(a.record, '$.patterns') AS pt
    WHERE json_extract(pt.value, '$.type') IS NOT NULL
    """,
    "postgresql": """
    INSERT INTO call_patterns (tenant, external_id, pattern, kind, speaker, quote, start_s)
    SELECT
        a.tenant,
        a.external_id,
        pt.value ->> 'type',
        'other',
        COALESCE(pt.value ->> 'speaker', 'any'),
        COALESCE(pt.value ->> 'quote', ''),
        COALESCE((pt.value ->> 'start')::float8, 0)
    FROM analyses AS a
    CROSS JOIN LATERAL jsonb_array_elements(a.record -> 'patterns') AS pt(value)
    WHERE pt.value ->> 'type' IS NOT NULL
    """,
}

RECREATED = ("call_scores", "criterion_evidence", "cost_daily")


def view_sql(dialect: str) -> dict[str, str]:
    """name -> SELECT of the views this revision re-creates."""
    if dialect not in FRAGMENTS:
        raise NotImplementedError(f"analyst views: unsupported database dialect {dialect!r}")
    f = FRAGMENTS[dialect]
    return {
        "call_scores": _call_scores(f),
        "criterion_evidence": _CRITERION_EVIDENCE[dialect],
        "cost_daily": _cost_daily(f),
    }


def _previous_view_sql(dialect: str) -> dict[str, str]:
    """The views as 0002 created them (0003 and 0004 left these three alone)."""
    path = next(Path(__file__).parent.glob("0002_*.py"))
    spec = importlib.util.spec_from_file_location("callqa_migration_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: module.view_sql(dialect)[name] for name in RECREATED}


def _replace_views(sql: dict[str, str]) -> None:
    for name in RECREATED:
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"CREATE VIEW {name} AS {sql[name]}")


def _call_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
    ]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # Constraint and index names come from the metadata's naming convention (env.py hands
    # it to Alembic), as `create_all` names them: PostgreSQL truncates the two long unique
    # constraint names with a hash, which only the convention reproduces on each dialect.
    op.create_table(
        "analysis_versions",
        *_call_columns(),
        sa.Column("preset", sa.String(64), nullable=False),
        sa.Column("prompt_version", sa.String(32), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("scorer", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("valid", sa.Boolean, nullable=False),
        sa.Column("total", sa.Float),
        sa.Column("errors", sa.Text),
        sa.Column("record", JSONType),
        sa.Column("evidence_quotes", sa.Integer, nullable=False),
        sa.Column("evidence_verified", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("scored_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_analysis_versions"),
        sa.UniqueConstraint(
            "tenant", "external_id", "prompt_version", "variant", "scorer", "model"
        ),
    )
    op.create_index(
        "ix_analysis_versions_tenant_preset_variant",
        "analysis_versions",
        ["tenant", "preset", "variant"],
    )
    op.create_table(
        "call_patterns",
        *_call_columns(),
        sa.Column("pattern", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("speaker", sa.String(16), nullable=False),
        sa.Column("quote", sa.Text, nullable=False),
        sa.Column("start_s", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_call_patterns"),
    )
    op.create_index(
        "ix_call_patterns_tenant_external_id", "call_patterns", ["tenant", "external_id"]
    )
    op.create_table(
        "human_grades",
        *_call_columns(),
        sa.Column("criterion", sa.String(64), nullable=False),
        sa.Column("grader", sa.String(128), nullable=False),
        sa.Column("score", sa.Integer),
        sa.Column("loaded_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_human_grades"),
        sa.UniqueConstraint(
            "tenant",
            "external_id",
            "criterion",
            "grader",
            name="uq_human_grades_tenant_external_id_criterion_grader",
        ),
    )
    op.create_table(
        "grader_agreement",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("comparison", sa.String(16), nullable=False),
        sa.Column("preset", sa.String(64), nullable=False),
        sa.Column("prompt_version", sa.String(32), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("criterion", sa.String(64), nullable=False),
        sa.Column("pairs", sa.Integer, nullable=False),
        sa.Column("exact", sa.Float),
        sa.Column("within_one", sa.Float),
        sa.Column("qwk", sa.Float),
        sa.Column("spearman", sa.Float),
        sa.Column("bias", sa.Float),
        sa.Column("computed_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_grader_agreement"),
        sa.UniqueConstraint(
            "tenant", "comparison", "preset", "prompt_version", "variant", "criterion"
        ),
    )
    op.create_table(
        "variant_comparison",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("preset", sa.String(64), nullable=False),
        sa.Column("prompt_version", sa.String(32), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("valid_rate", sa.Float, nullable=False),
        sa.Column("mean_total", sa.Float),
        sa.Column("std_total", sa.Float),
        sa.Column("p10_total", sa.Float),
        sa.Column("p90_total", sa.Float),
        sa.Column("mean_latency_ms", sa.Float, nullable=False),
        sa.Column("mean_cost_usd", sa.Float, nullable=False),
        sa.Column("evidence_rate", sa.Float),
        sa.Column("computed_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_variant_comparison"),
        sa.UniqueConstraint(
            "tenant",
            "preset",
            "prompt_version",
            "variant",
            name="uq_variant_comparison_tenant_preset_prompt_version_variant",
        ),
    )
    op.create_table(
        "daily_pattern_aggregates",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("operator", sa.String(128), nullable=False),
        sa.Column("pattern", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("mentions", sa.Integer, nullable=False),
        sa.Column("share_of_calls", sa.Float, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_daily_pattern_aggregates"),
        sa.UniqueConstraint(
            "tenant",
            "day",
            "operator",
            "pattern",
            name="uq_daily_pattern_aggregates_tenant_day_operator_pattern",
        ),
    )
    # Existing analyses were all scored without a variant.
    op.add_column(
        "analyses",
        sa.Column("variant", sa.String(64), nullable=False, server_default="control"),
    )
    op.add_column("analyses", sa.Column("evidence_rate", sa.Float))
    op.add_column("transcripts", sa.Column("cost_usd", sa.Float))
    for column in ("llm_cost_usd", "speech_cost_usd"):
        op.add_column(
            "daily_aggregates", sa.Column(column, sa.Float, nullable=False, server_default="0")
        )
    op.add_column(
        "daily_aggregates",
        sa.Column("unpriced_calls", sa.Integer, nullable=False, server_default="0"),
    )
    op.add_column("daily_aggregates", sa.Column("mean_evidence_rate", sa.Float))
    # Until the aggregates are rebuilt, their cost was the LLM's alone.
    op.execute("UPDATE daily_aggregates SET llm_cost_usd = cost_usd")
    op.execute(_COPY_PATTERNS[dialect])
    _replace_views(view_sql(dialect))


def downgrade() -> None:
    # The old views first: they do not read the columns dropped below.
    _replace_views(_previous_view_sql(op.get_bind().dialect.name))
    for column in ("mean_evidence_rate", "unpriced_calls", "speech_cost_usd", "llm_cost_usd"):
        op.drop_column("daily_aggregates", column)
    op.drop_column("transcripts", "cost_usd")
    op.drop_column("analyses", "evidence_rate")
    op.drop_column("analyses", "variant")
    for table in (
        "daily_pattern_aggregates",
        "variant_comparison",
        "grader_agreement",
        "human_grades",
        "call_patterns",
        "analysis_versions",
    ):
        op.drop_table(table)
