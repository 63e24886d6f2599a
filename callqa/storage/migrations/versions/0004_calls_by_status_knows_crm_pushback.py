"""calls_by_status: a call failed at crm_pushback names that stage

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:20:00

0003 added the crm_pushback stage; `failed_stage` only knew the four stages before it, so
a call whose write-back failed showed a NULL stage. The view is re-created with the same
columns (SQL frozen here, per dialect, like 0002's).
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ERROR_PREFIX = {
    "sqlite": "substr(sc.error, 1, instr(sc.error, ': ') - 1)",
    "postgresql": "split_part(sc.error, ': ', 1)",
}


def _view(dialect: str, stages: tuple[str, ...]) -> str:
    prefix = ERROR_PREFIX[dialect]
    listed = ", ".join(f"'{s}'" for s in stages)
    return f"""
    SELECT
        sc.tenant,
        sc.external_id,
        sc.status,
        sc.error,
        CASE
            WHEN sc.status = 'failed' AND {prefix} IN ({listed})
            THEN {prefix}
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


BEFORE = ("raw_audio", "transcript", "diarized_transcript", "scored_analysis")
AFTER = (*BEFORE, "crm_pushback")


def _recreate(stages: tuple[str, ...]) -> None:
    op.execute("DROP VIEW IF EXISTS calls_by_status")
    op.execute(f"CREATE VIEW calls_by_status AS {_view(op.get_bind().dialect.name, stages)}")


def upgrade() -> None:
    _recreate(AFTER)


def downgrade() -> None:
    _recreate(BEFORE)
