"""Erasure (GDPR art. 17): delete one employee and scrub their personal data from the run history.

The run rows keep their counts and every run_changes row keeps its action, status and which fields
changed; only the names and emails go. Rows of other employees that quote the erased address (a
conflict over it, an email moved off it) lose that address too. When the tenant suppresses erased people,
the person also goes on its suppression list (store/suppressions.py), in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.orm import Session

from domain.emails import normalize_email
from store.models import Employee, RunChange
from store.repo import StoreNotFound, get_tenant
from store.suppressions import record_suppression

PERSONAL = ["email", "first_name", "last_name", "display_name"]


@dataclass(frozen=True)
class Erasure:
    employee_id: int
    source_user_id: str | None
    scrubbed_changes: int  # run_changes rows that lost personal data
    suppressed: bool = False  # put on the tenant's suppression list


def erase_employee(engine: Engine, tenant_id: str, email: str) -> Erasure:
    """Delete the tenant's employee with `email` (compared normalized) and scrub the run history, in one transaction."""
    norm = normalize_email(email.strip())
    with Session(engine) as session, session.begin():
        suppress = get_tenant(session, tenant_id).suppress_erased
        found = session.execute(
            select(Employee.id, Employee.source_user_id, Employee.email).where(
                Employee.tenant_id == tenant_id, Employee.email_norm == norm
            )
        ).first()
        if found is None:
            raise StoreNotFound(f"Tenant {tenant_id!r} has no employee with that email; nothing was erased.")
        employee_id, link, stored_email = found
        if suppress:  # first: without the secret it refuses, and nothing is erased
            record_suppression(session.connection(), tenant_id, email=stored_email, source_user_id=link)
        mine = RunChange.employee_id == employee_id
        if link is not None:
            mine = or_(mine, RunChange.source_user_id == link)
        scrub = {f"{side}_{field}": None for field in PERSONAL for side in ("old", "new")}
        personal = or_(*(getattr(RunChange, column).is_not(None) for column in scrub))
        own = session.execute(update(RunChange).where(RunChange.tenant_id == tenant_id, mine, personal).values(**scrub))
        # Other rows that quote the address itself (ASCII addresses compare by lower(); see normalize_email).
        quoted = 0
        for side in ("old", "new"):
            column = getattr(RunChange, f"{side}_email")
            quoted += session.execute(  # type: ignore[attr-defined]
                update(RunChange)
                .where(RunChange.tenant_id == tenant_id, func.lower(column) == norm)
                .values({column: None})
            ).rowcount
        session.execute(delete(Employee).where(Employee.id == employee_id))
        return Erasure(
            employee_id=employee_id,
            source_user_id=link,
            scrubbed_changes=int(own.rowcount or 0) + quoted,  # type: ignore[attr-defined]
            suppressed=suppress,
        )
