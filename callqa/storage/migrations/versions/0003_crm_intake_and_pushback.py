"""CRM intake and push-back: call details on staged_calls, the crm_pushbacks table

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00

staged_calls gains what a CRM says about a call before it is processed (duration and
direction, which the staging gate filters on, and the cards to write the result back to).
crm_pushbacks remembers, per call, the CRM note ids written (so a re-run updates the same
notes) and whether the low-score alert went out (so it goes out once).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("staged_calls", sa.Column("duration_s", sa.Float))
    op.add_column("staged_calls", sa.Column("direction", sa.String(16)))
    op.add_column("staged_calls", sa.Column("links", JSONType))
    op.create_index("ix_staged_calls_tenant_status", "staged_calls", ["tenant", "status"])
    op.create_table(
        "crm_pushbacks",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("adapter", sa.String(32), nullable=False),
        sa.Column("note_ids", JSONType, nullable=False),
        sa.Column("total", sa.Float, nullable=False),
        sa.Column("report_url", sa.Text, nullable=False),
        sa.Column("pushed_at", Timestamp, nullable=False),
        sa.Column("alerted_at", Timestamp),
        sa.Column("alert_destination", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name="pk_crm_pushbacks"),
        sa.UniqueConstraint("tenant", "external_id", name="uq_crm_pushbacks_tenant_external_id"),
    )


def downgrade() -> None:
    op.drop_table("crm_pushbacks")
    op.drop_index("ix_staged_calls_tenant_status", "staged_calls")
    op.drop_column("staged_calls", "links")
    op.drop_column("staged_calls", "direction")
    op.drop_column("staged_calls", "duration_s")
