"""providers as they arrive: a group's type, and an employee's end date from the source

Revision ID: 0010
Revises: 0009

`source_groups.type` keeps Unified's group type (DEPARTMENT, TEAM, BRANCH, GROUP, ...), shown beside the name
where an admin picks groups; `employees.leave_date` the end date (`terminated_at`) the source gives, as
YYYY-MM-DD: ahead of today the planned leave date, once reached the reason the employee is `terminated`.
Both start empty: the next run of each tenant fills them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("source_groups") as batch:
        batch.add_column(sa.Column("type", sa.String(40), nullable=True))
    with op.batch_alter_table("employees") as batch:
        batch.add_column(sa.Column("leave_date", sa.String(10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("employees") as batch:
        batch.drop_column("leave_date")
    with op.batch_alter_table("source_groups") as batch:
        batch.drop_column("type")
