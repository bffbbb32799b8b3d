"""The store's tables read out as polars frames, in one query each: what the match stage compares against.

Apart from store/repo.py so that the commands that only list things do not import polars (bench/README.md,
"Starts")."""

from __future__ import annotations

import polars as pl
from sqlalchemy import Engine

from schemas.employees import EMPLOYEE_SCHEMA
from store.bulk import copy_out

_EMPLOYEE_FIELDS = list(EMPLOYEE_SCHEMA)[1:9]  # after employee_id, named as the table names them
# The two policy columns travel as numbers, which both dialects write and polars reads alike.
_FLAGGED_EPOCH_US = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM flagged_at) * 1000000 AS BIGINT)",
    "sqlite": "CAST(ROUND((julianday(flagged_at) - 2440587.5) * 86400000000) AS INTEGER)",
}
_READ_SCHEMA = {**EMPLOYEE_SCHEMA, "flagged_at": pl.Int64(), "deactivated": pl.Int8()}


def read_employees(engine: Engine, tenant_id: str) -> pl.DataFrame:
    """The tenant's employees as the match stage wants them (EMPLOYEE_SCHEMA), in one query."""
    with engine.connect() as conn:
        # On Postgres a COPY TO STDOUT into polars' CSV reader: about twice as fast as fetching rows at 100k.
        columns = ", ".join(_EMPLOYEE_FIELDS)
        flagged = _FLAGGED_EPOCH_US[engine.dialect.name]
        deactivated = "CASE WHEN deactivated_at IS NULL THEN 0 ELSE 1 END"
        select_sql = (
            f"SELECT id, {columns}, {flagged}, {deactivated}, leave_date "
            "FROM employees WHERE tenant_id = %s ORDER BY id"
        )
        frame = copy_out(conn, select_sql, (tenant_id,), _READ_SCHEMA)
    return frame.with_columns(
        pl.col("flagged_at").cast(pl.Datetime("us", "UTC")), pl.col("deactivated").cast(pl.Boolean())
    )


STORED_MEMBERSHIP_SCHEMA: dict[str, pl.DataType] = {"employee_id": pl.Int64(), "group_id": pl.String()}


def read_memberships(engine: Engine, tenant_id: str) -> pl.DataFrame:
    """The tenant's stored group memberships (employee_id, group_id), in one query."""
    with engine.connect() as conn:
        select_sql = "SELECT employee_id, group_id FROM employee_groups WHERE tenant_id = %s"
        return copy_out(conn, select_sql, (tenant_id,), STORED_MEMBERSHIP_SCHEMA)
