"""initial warehouse schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 13:58:14.384619
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "analyses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("call_day", sa.Date(), nullable=False),
        sa.Column("operator", sa.String(length=128), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("preset", sa.String(length=64), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("scorer", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("weakest_criterion", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column(
            "record",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analyses")),
        sa.UniqueConstraint("tenant", "external_id", name=op.f("uq_analyses_tenant_external_id")),
    )
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analyses_tenant_call_day"), ["tenant", "call_day"], unique=False
        )

    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("partition_key", sa.String(length=200), nullable=False),
        sa.Column("audio_uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("codec", sa.String(length=32), nullable=False),
        sa.Column("container", sa.String(length=64), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("operator", sa.String(length=128), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("tenant", "external_id", name=op.f("uq_calls_tenant_external_id")),
    )
    op.create_table(
        "criterion_scores",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("criterion", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_criterion_scores")),
        sa.UniqueConstraint(
            "tenant",
            "external_id",
            "criterion",
            name=op.f("uq_criterion_scores_tenant_external_id_criterion"),
        ),
    )
    op.create_table(
        "daily_aggregates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("operator", sa.String(length=128), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("mean_total", sa.Float(), nullable=False),
        sa.Column("min_total", sa.Float(), nullable=False),
        sa.Column("max_total", sa.Float(), nullable=False),
        sa.Column("audio_s", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("mean_operator_talk_share", sa.Float(), nullable=False),
        sa.Column("mean_silence_ratio", sa.Float(), nullable=False),
        sa.Column("interruptions", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daily_aggregates")),
        sa.UniqueConstraint(
            "tenant", "day", "operator", name=op.f("uq_daily_aggregates_tenant_day_operator")
        ),
    )
    op.create_table(
        "daily_criterion_aggregates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("operator", sa.String(length=128), nullable=False),
        sa.Column("criterion", sa.String(length=64), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("mean_score", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daily_criterion_aggregates")),
        sa.UniqueConstraint(
            "tenant",
            "day",
            "operator",
            "criterion",
            name=op.f("uq_daily_criterion_aggregates_tenant_day_operator_criterion"),
        ),
    )
    op.create_table(
        "scoring_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("scorer", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("raw_output", sa.Text(), nullable=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_attempts")),
    )
    with op.batch_alter_table("scoring_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scoring_attempts_tenant_external_id"),
            ["tenant", "external_id"],
            unique=False,
        )

    op.create_table(
        "staged_calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("operator", sa.String(length=128), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("staged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staged_calls")),
        sa.UniqueConstraint(
            "tenant", "external_id", name=op.f("uq_staged_calls_tenant_external_id")
        ),
    )
    with op.batch_alter_table("staged_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_staged_calls_status"), ["status"], unique=False)

    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "transcripts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("word_count", sa.Integer(), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcripts")),
        sa.UniqueConstraint(
            "tenant", "external_id", "stage", name=op.f("uq_transcripts_tenant_external_id_stage")
        ),
    )


def downgrade() -> None:

    op.drop_table("transcripts")
    op.drop_table("tenants")
    with op.batch_alter_table("staged_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staged_calls_status"))

    op.drop_table("staged_calls")
    with op.batch_alter_table("scoring_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scoring_attempts_tenant_external_id"))

    op.drop_table("scoring_attempts")
    op.drop_table("daily_criterion_aggregates")
    op.drop_table("daily_aggregates")
    op.drop_table("criterion_scores")
    op.drop_table("calls")
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analyses_tenant_call_day"))

    op.drop_table("analyses")
