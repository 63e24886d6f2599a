"""analyst views: call_scores, criterion_evidence, operator_criterion_weekly, pattern_weekly,
cost_daily, calls_by_status

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 22:00:00

Each view answers one common analyst question in one short SELECT; docs/data-dictionary.md
documents their columns and example queries, and `callqa/storage/views.py` describes them
(typed) for Python readers. Every view keeps the `tenant` column.

The SQL is written out per dialect because JSON access differs: on PostgreSQL the
`analyses.record` column is JSONB (0001 creates it as `JSON().with_variant(JSONB)`), so the
views use `->`, `->>` and `jsonb_array_elements`; on SQLite it is JSON text, read with
`json_extract` and `json_each`. The SQL is frozen here on purpose (a migration must not
change when application code does); a later change to a view is a new migration that drops
and re-creates it.

Conventions shared by all views:
- a NULL operator is reported as 'unknown' (as the daily aggregates do);
- `operator = '*'` rows (operator_criterion_weekly, pattern_weekly) are the whole team;
- weeks are ISO weeks, `week_start` = the Monday (a date);
- means are over calls (AVG over the calls' scores), never over daily means.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The bundled sales-default criteria, one wide column each in call_scores. Criteria of other
# presets are in criterion_scores / operator_criterion_weekly (and `callqa export` adds them).
WIDE_CRITERIA = (
    "greeting",
    "needs_discovery",
    "presentation",
    "objection_handling",
    "closing",
    "tone",
)

# Dialect-specific fragments of the views that do not unnest JSON (alias a = analyses,
# sc = staged_calls).
FRAGMENTS = {
    "sqlite": {
        # 'weekday 0' moves to the next Sunday (or stays on one); -6 days is that ISO week's Monday.
        "week": "date(a.call_day, 'weekday 0', '-6 days')",
        "record_duration": "json_extract(a.record, '$.call.audio.duration_s')",
        "record_tokens": "json_extract(a.record, '$.scoring.tokens.total')",
        "float": "REAL",
        "error_prefix": "substr(sc.error, 1, instr(sc.error, ': ') - 1)",
        "lateral": False,
    },
    "postgresql": {
        "week": "a.call_day - (EXTRACT(ISODOW FROM a.call_day)::int - 1)",
        "record_duration": "(a.record -> 'call' -> 'audio' ->> 'duration_s')::float8",
        "record_tokens": "(a.record -> 'scoring' -> 'tokens' ->> 'total')::int",
        "float": "float8",
        "error_prefix": "split_part(sc.error, ': ', 1)",
        "lateral": True,
    },
}

# The two "scopes" every call is counted in: its operator (team = 0) and the team '*' (1).
SCOPES = "(SELECT 0 AS team UNION ALL SELECT 1 AS team) AS scope"
SCOPED_OPERATOR = "CASE WHEN scope.team = 1 THEN '*' ELSE COALESCE(a.operator, 'unknown') END"


def _per_call(f: dict, table: str, columns: str, alias: str) -> str:
    """Join `a` (analyses) to an aggregate of `table`'s rows of the same call.

    PostgreSQL: a LATERAL subquery, looked up per call through the table's (tenant,
    external_id) index, so a query for one week of a tenant costs that week's calls, not the
    tenant's whole history (a GROUP BY subquery cannot be parameterized). An aggregate
    without GROUP BY always returns one row. SQLite has no LATERAL: a grouped subquery.
    """
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
        COALESCE(c.duration_s, {f["record_duration"]}) AS duration_s,
        a.total,
        {wide},
        a.weakest_criterion,
        sc.status,
        sc.error,
        a.cost_usd AS llm_cost_usd,
        att.spend_usd AS llm_spend_usd,
        COALESCE(att.attempts, 0) AS llm_attempts,
        {f["record_tokens"]} AS llm_tokens,
        CAST(NULL AS {f["float"]}) AS speech_cost_usd,
        a.cost_usd AS cost_usd,
        a.updated_at AS analysed_at
    FROM analyses AS a
    LEFT JOIN calls AS c ON c.tenant = a.tenant AND c.external_id = a.external_id
    LEFT JOIN staged_calls AS sc ON sc.tenant = a.tenant AND sc.external_id = a.external_id
    {_per_call(f, "criterion_scores", PIVOT, "s")}
    {_per_call(f, "scoring_attempts", SPEND, "att")}
    """


_CRITERION_EVIDENCE = {
    # One row per evidence quote; a criterion without evidence keeps one row with NULL quote.
    # speaker: the record's transcript segment whose text contains the quote (case-insensitive),
    # else the one whose start is nearest the quote's start.
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
        (
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
        ) AS speaker
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
        (
            SELECT seg.value ->> 'speaker'
            FROM jsonb_array_elements(a.record -> 'transcript' -> 'segments') AS seg(value)
            WHERE ev.value IS NOT NULL
            ORDER BY
                strpos(lower(seg.value ->> 'text'), lower(ev.value ->> 'quote')) = 0,
                abs((seg.value ->> 'start')::float8 - (ev.value ->> 'start')::float8),
                (seg.value ->> 'start')::float8
            LIMIT 1
        ) AS speaker
    FROM analyses AS a
    CROSS JOIN LATERAL jsonb_array_elements(a.record -> 'scores' -> 'criteria') AS cr(value)
    LEFT JOIN LATERAL jsonb_array_elements(cr.value -> 'evidence')
        WITH ORDINALITY AS ev(value, n) ON true
    """,
}


def _operator_criterion_weekly(f: dict) -> str:
    # criterion_scores has one row per call and criterion, so AVG here is over calls.
    return f"""
    SELECT
        a.tenant,
        {f["week"]} AS week_start,
        {SCOPED_OPERATOR} AS operator,
        s.criterion,
        COUNT(*) AS calls,
        AVG(CAST(s.score AS {f["float"]})) AS mean_score,
        MIN(s.score) AS min_score,
        MAX(s.score) AS max_score
    FROM criterion_scores AS s
    JOIN analyses AS a ON a.tenant = s.tenant AND a.external_id = s.external_id
    CROSS JOIN {SCOPES}
    GROUP BY a.tenant, {f["week"]}, {SCOPED_OPERATOR}, s.criterion
    """


def _pattern_weekly(f: dict, patterns: str, pattern_type: str) -> str:
    # p: pattern counts per week, scope and type; w: all analysed calls per week and scope.
    return f"""
    SELECT
        p.tenant,
        p.week_start,
        p.operator,
        p.pattern,
        p.occurrences,
        p.calls_with_pattern,
        w.calls,
        CAST(p.calls_with_pattern AS {f["float"]}) / w.calls AS call_share
    FROM (
        SELECT
            a.tenant,
            {f["week"]} AS week_start,
            {SCOPED_OPERATOR} AS operator,
            {pattern_type} AS pattern,
            COUNT(*) AS occurrences,
            COUNT(DISTINCT a.external_id) AS calls_with_pattern
        FROM analyses AS a
        CROSS JOIN {SCOPES}
        {patterns}
        GROUP BY a.tenant, {f["week"]}, {SCOPED_OPERATOR}, {pattern_type}
    ) AS p
    JOIN (
        SELECT
            a.tenant,
            {f["week"]} AS week_start,
            {SCOPED_OPERATOR} AS operator,
            COUNT(*) AS calls
        FROM analyses AS a
        CROSS JOIN {SCOPES}
        GROUP BY a.tenant, {f["week"]}, {SCOPED_OPERATOR}
    ) AS w ON w.tenant = p.tenant AND w.week_start = p.week_start AND w.operator = p.operator
    """


_PATTERNS = {
    "sqlite": ("JOIN json_each(a.record, '$.patterns') AS pt", "json_extract(pt.value, '$.type')"),
    "postgresql": (
        "CROSS JOIN LATERAL jsonb_array_elements(a.record -> 'patterns') AS pt(value)",
        "pt.value ->> 'type'",
    ),
}


def _cost_daily(f: dict) -> str:
    return f"""
    SELECT
        a.tenant,
        a.call_day AS day,
        COUNT(*) AS calls,
        SUM(COALESCE(c.duration_s, {f["record_duration"]})) AS audio_s,
        SUM(a.cost_usd) AS llm_cost_usd,
        SUM(att.spend_usd) AS llm_spend_usd,
        CAST(NULL AS {f["float"]}) AS speech_cost_usd,
        SUM(a.cost_usd) AS cost_usd,
        SUM(a.cost_usd) / COUNT(*) AS cost_per_call_usd
    FROM analyses AS a
    LEFT JOIN calls AS c ON c.tenant = a.tenant AND c.external_id = a.external_id
    {_per_call(f, "scoring_attempts", SPEND, "att")}
    GROUP BY a.tenant, a.call_day
    """


def _calls_by_status(f: dict) -> str:
    # failed_stage: the asset that failed, from the "<stage>: <problem>" errors callqa writes.
    stages = "'raw_audio', 'transcript', 'diarized_transcript', 'scored_analysis'"
    return f"""
    SELECT
        sc.tenant,
        sc.external_id,
        sc.status,
        sc.error,
        CASE
            WHEN sc.status = 'failed' AND {f["error_prefix"]} IN ({stages})
            THEN {f["error_prefix"]}
        END AS failed_stage,
        sc.source,
        COALESCE(sc.operator, 'unknown') AS operator,
        sc.category,
        sc.started_at,
        sc.staged_at,
        sc.updated_at,
        a.external_id IS NOT NULL AS has_analysis,
        a.total
    FROM staged_calls AS sc
    LEFT JOIN analyses AS a ON a.tenant = sc.tenant AND a.external_id = sc.external_id
    """


def view_sql(dialect: str) -> dict[str, str]:
    """name -> SELECT of every view, in creation order."""
    if dialect not in FRAGMENTS:
        raise NotImplementedError(f"analyst views: unsupported database dialect {dialect!r}")
    f = FRAGMENTS[dialect]
    return {
        "call_scores": _call_scores(f),
        "criterion_evidence": _CRITERION_EVIDENCE[dialect],
        "operator_criterion_weekly": _operator_criterion_weekly(f),
        "pattern_weekly": _pattern_weekly(f, *_PATTERNS[dialect]),
        "cost_daily": _cost_daily(f),
        "calls_by_status": _calls_by_status(f),
    }


def upgrade() -> None:
    for name, select in view_sql(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {select}")


def downgrade() -> None:
    for name in reversed(list(view_sql(op.get_bind().dialect.name))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
