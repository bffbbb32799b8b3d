"""What the employee store holds, read back for assertions: tests assert on table state, not on calls."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from store.db import make_engine
from store.models import Base, Employee, Run


def table(engine: Engine, tenant: str = "acme") -> dict[str, tuple[Any, ...]]:
    """The tenant's employees as {email: (first_name, status, linked source user id)}."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Employee.email, Employee.first_name, Employee.status, Employee.source_user_id).where(
                Employee.tenant_id == tenant
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def employee_count(engine: Engine, tenant: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(Employee.tenant_id == tenant)).scalar_one())


def last_run(engine: Engine, tenant: str | None = None) -> Any:
    """The newest run row (of the tenant, if given), or None."""
    query = select(Run).order_by(Run.started_at.desc())
    if tenant is not None:
        query = query.where(Run.tenant_id == tenant)
    with engine.connect() as conn:
        return conn.execute(query).first()


def runs_of(engine: Engine, tenant: str) -> list[tuple[str, str | None]]:
    """(outcome, failed stage) of each of the tenant's runs, oldest first."""
    with engine.connect() as conn:
        return [
            (r.outcome, r.failed_stage)
            for r in conn.execute(select(Run).where(Run.tenant_id == tenant).order_by(Run.started_at))
        ]


def db_state(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the employee store, to show that a refused command wrote nothing."""
    with make_engine(url).connect() as conn:
        return {
            t.name: sorted((tuple(row) for row in conn.execute(select(t))), key=repr)
            for t in Base.metadata.sorted_tables
        }


def rows_of(url: str, table_name: str) -> list[dict[str, Any]]:
    """Every row of one table, as dicts."""
    with make_engine(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(Base.metadata.tables[table_name]))]
