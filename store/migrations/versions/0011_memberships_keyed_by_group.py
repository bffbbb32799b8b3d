"""employee_groups: one index, keyed (tenant, group, employee), no foreign key to employees

Revision ID: 0011
Revises: 0010

The first sync of 100k employees in three groups each wrote 300k memberships through a foreign key check per
row, the key (tenant, employee, group) and a second index (tenant, group): the load took 3.6 times its COPY
floor (bench/README.md). The key now runs (tenant, group, employee), which answers a group's members as the
dropped index did, and the foreign key is gone (as on run_changes): whoever deletes an employee deletes its
memberships in the same transaction. The downgrade removes memberships of employees that no longer exist
before the foreign key returns.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_employee_groups_employee_id_employees"


def upgrade() -> None:
    op.drop_index("ix_employee_groups_tenant_group", table_name="employee_groups")
    with op.batch_alter_table("employee_groups") as batch:
        batch.drop_constraint(_FK, type_="foreignkey")
        batch.drop_constraint("pk_employee_groups", type_="primary")
        batch.create_primary_key("pk_employee_groups", ["tenant_id", "group_id", "employee_id"])


def downgrade() -> None:
    op.execute("DELETE FROM employee_groups WHERE employee_id NOT IN (SELECT id FROM employees)")
    with op.batch_alter_table("employee_groups") as batch:
        batch.drop_constraint("pk_employee_groups", type_="primary")
        batch.create_primary_key("pk_employee_groups", ["tenant_id", "employee_id", "group_id"])
        batch.create_foreign_key(_FK, "employees", ["employee_id"], ["id"], ondelete="CASCADE")
    op.create_index("ix_employee_groups_tenant_group", "employee_groups", ["tenant_id", "group_id"])
