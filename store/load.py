"""Apply a match plan in one transaction, writing only the rows that change.

The plan goes into a temporary staging table (COPY on Postgres, one executemany on SQLite), then a
few set-based statements insert the new employees, update the changed ones and record every outcome
in `run_changes`. Nothing here loops over employees, and nothing deletes one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, text

from schemas.plan import FIELDS, WRITES
from store.models import utcnow

STAGE_COLUMNS: dict[str, str] = {
    "employee_id": "BIGINT",
    "source_user_id": "VARCHAR(200)",
    "action": "VARCHAR(20)",
    "reason": "TEXT",
    "changed_fields": "VARCHAR(200)",
    "new_email_norm": "VARCHAR(320)",
    "new_employment_status": "VARCHAR(20)",
    **{f"{side}_{field}": "TEXT" for field in FIELDS for side in ("old", "new")},
}

# Outcomes recorded in run_changes: every write, and every conflict (by source id and reason).
RECORDED = [*WRITES, "conflict"]


def stage_frame(plan: pl.DataFrame) -> pl.DataFrame:
    """The rows worth staging, with old/new kept only for the fields that change (the audit record)."""
    rows = plan.filter(pl.col("action").is_in(RECORDED))
    changed = pl.col("changed_fields").fill_null("").str.split(",")
    audit = []
    for field in FIELDS:
        differs = changed.list.contains(field)
        audit += [
            pl.when(differs).then(pl.col(f"old_{field}")).alias(f"audit_old_{field}"),
            pl.when(differs).then(pl.col(f"new_{field}")).alias(f"audit_new_{field}"),
        ]
    return rows.with_columns(audit).select(
        *STAGE_COLUMNS,
        *[f"audit_{side}_{field}" for field in FIELDS for side in ("old", "new")],
    )


def _create_stage(conn: Connection, columns: list[str]) -> None:
    types = {**STAGE_COLUMNS, **{c: "TEXT" for c in columns if c.startswith("audit_")}}
    conn.execute(text("DROP TABLE IF EXISTS plan_stage"))
    ddl = ", ".join(f"{c} {types[c]}" for c in columns)
    conn.execute(text(f"CREATE TEMPORARY TABLE plan_stage ({ddl})"))


def _fill_stage(conn: Connection, frame: pl.DataFrame) -> None:
    columns = frame.columns
    if conn.dialect.name == "postgresql":
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        with (
            dbapi.cursor() as cursor,
            cursor.copy(f"COPY plan_stage ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in frame.iter_rows():
                copy.write_row(row)
    elif frame.height:
        placeholders = ", ".join(f":{c}" for c in columns)
        conn.execute(
            text(f"INSERT INTO plan_stage ({', '.join(columns)}) VALUES ({placeholders})"),
            frame.to_dicts(),
        )


_INSERT_CREATED = """
INSERT INTO employees (tenant_id, email, email_norm, first_name, last_name, display_name,
                       employment_status, source_user_id, status, created_at, updated_at)
SELECT :tenant, new_email, new_email_norm, new_first_name, new_last_name, new_display_name,
       new_employment_status, source_user_id, new_status, :now, :now
FROM plan_stage WHERE action = 'created'
"""

# The IS DISTINCT FROM guard keeps a write from touching a row that already holds these values.
_UPDATE_CHANGED = """
UPDATE employees SET
    email = s.new_email, email_norm = s.new_email_norm,
    first_name = s.new_first_name, last_name = s.new_last_name, display_name = s.new_display_name,
    employment_status = s.new_employment_status, status = s.new_status,
    source_user_id = s.source_user_id, updated_at = :now
FROM plan_stage AS s
WHERE employees.id = s.employee_id AND employees.tenant_id = :tenant
  AND s.action IN ('linked', 'updated', 'terminated', 'non_matching', 'reactivated')
  AND (employees.email IS DISTINCT FROM s.new_email
       OR employees.first_name IS DISTINCT FROM s.new_first_name
       OR employees.last_name IS DISTINCT FROM s.new_last_name
       OR employees.display_name IS DISTINCT FROM s.new_display_name
       OR employees.employment_status IS DISTINCT FROM s.new_employment_status
       OR employees.status IS DISTINCT FROM s.new_status
       OR employees.source_user_id IS DISTINCT FROM s.source_user_id)
"""

_AUDIT_COLUMNS = ", ".join(f"{side}_{field}" for field in FIELDS for side in ("old", "new"))
_AUDIT_VALUES = ", ".join(f"s.audit_{side}_{field}" for field in FIELDS for side in ("old", "new"))

# Created employees get their new id from the row just inserted (one join on the tenant's email).
_RECORD_CHANGES = f"""
INSERT INTO run_changes (run_id, tenant_id, employee_id, source_user_id, action, reason, changed_fields,
                         {_AUDIT_COLUMNS})
SELECT :run_id, :tenant, COALESCE(s.employee_id, e.id), s.source_user_id, s.action, s.reason,
       s.changed_fields, {_AUDIT_VALUES}
FROM plan_stage AS s
LEFT JOIN employees AS e
  ON s.action = 'created' AND :write = 1 AND e.tenant_id = :tenant AND e.email_norm = s.new_email_norm
"""

_RECORD_QUARANTINE = """
INSERT INTO run_changes (run_id, tenant_id, source_user_id, action, reason)
VALUES (:run_id, :tenant, :source_user_id, 'invalid', :reason)
"""


def apply_plan(
    engine: Engine,
    *,
    tenant_id: str,
    run_id: str,
    plan: pl.DataFrame,
    quarantine: pl.DataFrame,
    dry_run: bool,
    now: datetime | None = None,
) -> int:
    """Write the plan (or, in a dry run, only its record). Returns the employee rows written."""
    frame = stage_frame(plan)
    params: dict[str, Any] = {"tenant": tenant_id, "now": now or utcnow(), "run_id": run_id}
    written = 0
    with engine.begin() as conn:
        _create_stage(conn, frame.columns)
        _fill_stage(conn, frame)
        if not dry_run:
            written += conn.execute(text(_INSERT_CREATED), params).rowcount or 0
            written += conn.execute(text(_UPDATE_CHANGED), params).rowcount or 0
        conn.execute(text(_RECORD_CHANGES), {**params, "write": 0 if dry_run else 1})
        if quarantine.height:
            conn.execute(
                text(_RECORD_QUARANTINE),
                [
                    {**params, "source_user_id": row["source_user_id"], "reason": row["reason"]}
                    for row in quarantine.select("source_user_id", "reason").iter_rows(named=True)
                ],
            )
        conn.execute(text("DROP TABLE plan_stage"))
    return written
