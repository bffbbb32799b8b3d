"""why flagged: an index on the flag records of run_changes, so an employee's reason is one lookup

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLAGS = sa.text("action IN ('non_matching', 'terminated')")


def upgrade() -> None:
    op.create_index(
        "ix_run_changes_flags",
        "run_changes",
        ["tenant_id", "employee_id"],
        unique=False,
        sqlite_where=FLAGS,
        postgresql_where=FLAGS,
    )


def downgrade() -> None:
    op.drop_index("ix_run_changes_flags", table_name="run_changes")
