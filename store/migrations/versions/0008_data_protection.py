"""data protection: suppression after erasure, retention of the run history

Revision ID: 0008
Revises: 0007

Per tenant: whether an erasure suppresses the person in later syncs (off) and the retention period of names
and emails in the run history (90 days). Per run: when retention scrubbed it. The suppression list itself
holds one-way digests only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("suppress_erased", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=False, server_default="90"))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("scrubbed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "suppressions",
        sa.Column("tenant_id", sa.String(100), nullable=False),
        sa.Column("email_digest", sa.String(64), nullable=False),
        sa.Column("source_digest", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_suppressions_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("tenant_id", "email_digest", name="pk_suppressions"),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("scrubbed_at")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("retention_days")
        batch.drop_column("suppress_erased")
