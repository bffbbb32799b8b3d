"""group sync: the employees' memberships of the selected groups, and the group of a joined/left record

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "employee_groups",
        sa.Column("tenant_id", sa.String(100), nullable=False),
        sa.Column("employee_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["employee_id"],
            ["employees.id"],
            name="fk_employee_groups_employee_id_employees",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "employee_id", "group_id", name="pk_employee_groups"),
    )
    op.create_index("ix_employee_groups_tenant_group", "employee_groups", ["tenant_id", "group_id"])
    with op.batch_alter_table("run_changes") as batch:
        batch.add_column(sa.Column("group_id", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_changes") as batch:
        batch.drop_column("group_id")
    op.drop_index("ix_employee_groups_tenant_group", table_name="employee_groups")
    op.drop_table("employee_groups")
