"""Access requests (GDPR art. 15): everything the employee store holds about one person of one tenant, as one
JSON-ready document, and nothing about anyone else.

The person is found by email, compared as matching compares it (domain.emails.normalize_email). Their rows:
the employee row; their group memberships (with the groups' names); every run change that names them, by
employee id or by the source user id they are linked to (old -> new); the audit entries that name their employee
id (a bulk entry shows their id alone, not the others it named); and whether they are on the suppression list.

Employee ids can come back on SQLite (a deleted employee's id, when it was the highest, goes to the next one
created), so run changes and audit entries by employee id count only from when this employee was created:
what is older was someone else's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from domain.emails import normalize_email
from store.models import AuditEntry, Employee, EmployeeGroup, Run, RunChange, SourceGroup, utcnow
from store.repo import get_tenant
from store.suppressions import suppressed_since

_CHANGE_COLUMNS = [c.name for c in RunChange.__table__.columns if c.name not in ("tenant_id", "run_id", "seq")]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def person_export(engine: Engine, tenant_id: str, email: str) -> dict[str, Any] | None:
    """The document for the person with `email` in the tenant, or None when the store holds nothing about them."""
    norm = normalize_email(email.strip())
    with Session(engine) as session:
        get_tenant(session, tenant_id)
        # No stored email holds a NUL byte (PostgreSQL stores none, and refuses one in a query).
        employee = (
            None
            if "\x00" in norm
            else session.scalars(
                select(Employee).where(Employee.tenant_id == tenant_id, Employee.email_norm == norm)
            ).first()
        )
        suppressed = suppressed_since(engine, tenant_id, email)
        if employee is None and suppressed is None:
            return None
        document: dict[str, Any] = {
            "tenant": tenant_id,
            "exported_at": utcnow().isoformat(),
            "employee": None,
            "group_memberships": [],
            "run_changes": [],
            "audit": [],
            "suppression": None if suppressed is None else {"since": suppressed.isoformat()},
        }
        if employee is None:  # erased and suppressed: the list's digest is all that is held
            return document
        document["employee"] = {c.name: _plain(getattr(employee, c.key)) for c in Employee.__table__.columns}
        document["group_memberships"] = [
            {"group_id": group_id, "name": name}
            for group_id, name in session.execute(
                select(EmployeeGroup.group_id, SourceGroup.name)
                .outerjoin(
                    SourceGroup,
                    (SourceGroup.tenant_id == EmployeeGroup.tenant_id)
                    & (SourceGroup.group_id == EmployeeGroup.group_id),
                )
                .where(EmployeeGroup.tenant_id == tenant_id, EmployeeGroup.employee_id == employee.id)
                .order_by(EmployeeGroup.group_id)
            )
        ]
        document["run_changes"] = _changes(session, tenant_id, employee)
        document["audit"] = _audit(session, tenant_id, employee)
        return document


def _changes(session: Session, tenant_id: str, employee: Employee) -> list[dict[str, Any]]:
    """The run changes naming the employee (by id, since it exists) or its linked source user, oldest first."""
    mine = RunChange.employee_id == employee.id
    if employee.source_user_id is not None:
        mine = or_(mine, RunChange.source_user_id == employee.source_user_id)
    rows = session.execute(
        select(RunChange, Run.started_at, Run.ended_at)
        .join(Run, Run.id == RunChange.run_id)
        .where(RunChange.tenant_id == tenant_id, mine)
        .order_by(Run.started_at, RunChange.run_id, RunChange.seq)
    )
    found = []
    for change, started, ended in rows:
        by_id_only = change.source_user_id != employee.source_user_id or employee.source_user_id is None
        if by_id_only and ended is not None and ended < employee.created_at:
            continue  # a run that ended before this employee existed: its id was another employee's then
        found.append(
            {
                "run_id": change.run_id,
                "run_started_at": _plain(started),
                "seq": change.seq,
                **{name: getattr(change, name) for name in _CHANGE_COLUMNS},
            }
        )
    return found


def _audit(session: Session, tenant_id: str, employee: Employee) -> list[dict[str, Any]]:
    """The tenant's audit entries naming the employee's id (since it exists), each with only that id of theirs."""
    entries = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.tenant_id == tenant_id, AuditEntry.at >= employee.created_at)
        .order_by(AuditEntry.at, AuditEntry.id)
    )
    return [
        {
            "at": _plain(entry.at),
            "actor": entry.actor,
            "action": entry.action,
            "old": _cut(entry.old, employee.id),
            "new": _cut(entry.new, employee.id),
        }
        for entry in entries
        if _names(entry.old, employee.id) or _names(entry.new, employee.id)
    ]


def _names(values: dict[str, Any] | None, employee_id: int) -> bool:
    """Whether an audit entry's old or new values name this employee: `employee` (one id) or `employees` (ids)."""
    if not values:
        return False
    listed = values.get("employees")
    return values.get("employee") == employee_id or (isinstance(listed, list) and employee_id in listed)


def _cut(values: dict[str, Any] | None, employee_id: int) -> dict[str, Any] | None:
    """An entry's values with a list of employee ids cut down to this employee's."""
    if not values or not isinstance(values.get("employees"), list):
        return values
    return {**values, "employees": [i for i in values["employees"] if i == employee_id]}
