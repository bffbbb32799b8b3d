"""deprovisioning policy: a mode and grace period per integration; when an employee was flagged and deactivated

Revision ID: 0006
Revises: 0005

Employees flagged before this revision get the time of their newest flag record as `flagged_at` (or, without
one, the time they were last changed), so that a grace period counts from when they were really flagged.

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = """
UPDATE employees SET flagged_at = COALESCE(
    (SELECT MAX(runs.started_at) FROM run_changes JOIN runs ON runs.id = run_changes.run_id
     WHERE run_changes.tenant_id = employees.tenant_id AND run_changes.employee_id = employees.id
       AND run_changes.action IN ('non_matching', 'terminated')),
    employees.updated_at)
WHERE status IN ('non_matching', 'terminated')
"""


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("deprovision_mode", sa.String(20), nullable=False, server_default="flag"))
        batch.add_column(sa.Column("deprovision_grace_days", sa.Integer(), nullable=False, server_default="30"))
    with op.batch_alter_table("employees") as batch:
        batch.add_column(sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(_BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table("employees") as batch:
        batch.drop_column("deactivated_at")
        batch.drop_column("flagged_at")
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("deprovision_grace_days")
        batch.drop_column("deprovision_mode")
