"""Offboarding a customer: every row of one tenant, in every table of the employee store, counted or deleted.

The tables are enumerated from the models (`Base.metadata`), not listed here, so a table added later is covered
as soon as it names its tenant in a `tenant_id` column; one that does not is refused at once (`TenantColumnMissing`)
rather than silently kept. All-tenants API keys and audit entries of no tenant are not any tenant's rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, and_, delete, func, select

from store.access import record
from store.models import Base, TenantLock


class TenantColumnMissing(RuntimeError):
    """A table of the store does not say whose rows it holds: offboarding cannot promise to empty it."""


def tenant_column(table: Table) -> Column[Any]:
    """The column naming a row's tenant: `tenants.id`, elsewhere `tenant_id`."""
    column = table.c.get("id") if table.name == "tenants" else table.c.get("tenant_id")
    if column is None:
        raise TenantColumnMissing(
            f"table {table.name} has no tenant_id column: say in store/offboard.py how a tenant's rows are found there"
        )
    return column


def _of_tenant(table: Table, tenant_id: str, keep_lock: str | None) -> Any:
    where = tenant_column(table) == tenant_id
    if table.name == TenantLock.__tablename__ and keep_lock is not None:
        where = and_(where, table.c.owner != keep_lock)
    return where


def tenant_rows(engine: Engine, tenant_id: str, *, keep_lock: str | None = None) -> dict[str, int]:
    """How many rows of the tenant each table holds, by table name (every table, zero included), not counting
    the lock row `keep_lock` (the asking command's own)."""
    with engine.connect() as conn:
        return {
            table.name: int(
                conn.execute(
                    select(func.count()).select_from(table).where(_of_tenant(table, tenant_id, keep_lock))
                ).scalar()
                or 0
            )
            for table in Base.metadata.sorted_tables
        }


def delete_tenant_rows(engine: Engine, tenant_id: str, *, actor: str, keep_lock: str | None = None) -> dict[str, int]:
    """Delete every row of the tenant, children before parents, in one transaction: all of it or nothing. The
    lock row `keep_lock` (the deleting command's own, on SQLite) stays for its holder to release. One audit entry
    records that a tenant was deleted, by whom and how many rows, without naming it: no row names it afterwards."""
    deleted: dict[str, int] = {}
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            deleted[table.name] = int(
                conn.execute(delete(table).where(_of_tenant(table, tenant_id, keep_lock))).rowcount or 0
            )
        _record(conn, actor=actor, rows=sum(deleted.values()))
    return {table.name: deleted[table.name] for table in Base.metadata.sorted_tables}


def _record(conn: Connection, *, actor: str, rows: int) -> None:
    record(conn, tenant=None, actor=actor, action="tenant_deleted", new={"rows": rows})
