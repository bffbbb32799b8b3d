"""Erasure (GDPR art. 17): delete one employee and scrub their personal data from the run history.

The person is named by email (compared in the product's own normal form, `domain.emails.normalize_email`, the
one `employees.email_norm` holds) or by the source user id their employee is linked to. The run rows keep their
counts and every run_changes row keeps its action, status and which fields changed; only the names and emails go.

Which rows name the person: their own, by the employee id and the link (set-based); and rows of other employees
that quote one of the person's addresses (a conflict over it, an email moved off it), which lose that address.
run_changes keeps no normalized email, and the database cannot compute the product's form (`lower()` is
ASCII-only on SQLite, neither dialect composes NFC, and a decomposed `Ä` or a capital `ẞ` must still match), so
the tenant's distinct quoted addresses are normalized here, in Python, and the rows holding a spelling of the
person's mailbox are scrubbed in one UPDATE. One pass over the tenant's run history, as the `lower()`
comparison it replaces was (no index could serve that either).

When the tenant suppresses erased people, the person also goes on its suppression list (store/suppressions.py,
by their email and their link), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, case, or_, select, union, update
from sqlalchemy.orm import Session

from domain.emails import normalize_email
from store.models import Employee, RunChange
from store.repo import StoreError, StoreNotFound, delete_employee_rows, get_tenant
from store.suppressions import record_suppression

PERSONAL = ["email", "first_name", "last_name", "display_name"]


@dataclass(frozen=True)
class Erasure:
    employee_id: int
    source_user_id: str | None
    scrubbed_changes: int  # run_changes rows that lost personal data
    suppressed: bool = False  # put on the tenant's suppression list


def check_one_person(email: str | None, source_user_id: str | None) -> None:
    """An erasure names its person one way: by email or by source user id, never both or neither."""
    if (email is None) == (source_user_id is None):
        raise StoreError("Name the employee to erase by email or by source user id: exactly one of them.")


def erase_employee(
    engine: Engine, tenant_id: str, email: str | None = None, *, source_user_id: str | None = None
) -> Erasure:
    """Delete the tenant's employee with `email` (any spelling of the mailbox) or linked to `source_user_id`, and
    scrub the run history, in one transaction."""
    check_one_person(email, source_user_id)
    if email is not None:
        which, named = Employee.email_norm == normalize_email(email.strip()), "with that email"
    else:
        which, named = Employee.source_user_id == source_user_id, "linked to that source user id"
    with Session(engine) as session, session.begin():
        suppress = get_tenant(session, tenant_id).suppress_erased
        # No stored email or id holds a NUL byte (PostgreSQL stores none, and refuses one in a query).
        found = (
            None
            if "\x00" in (email if email is not None else source_user_id or "")
            else session.execute(
                select(Employee.id, Employee.source_user_id, Employee.email, Employee.email_norm).where(
                    Employee.tenant_id == tenant_id, which
                )
            ).first()
        )
        if found is None:
            raise StoreNotFound(f"Tenant {tenant_id!r} has no employee {named}; nothing was erased.")
        employee_id, link, stored_email, stored_norm = found
        conn = session.connection()
        if suppress:  # first: without the secret it refuses, and nothing is erased
            record_suppression(conn, tenant_id, email=stored_email, source_user_id=link)
        own = _scrub_own(conn, tenant_id, employee_id, link)
        quoted = _scrub_quoted(conn, tenant_id, {stored_norm, normalize_email(stored_email)})
        delete_employee_rows(conn, tenant_id, Employee.id == employee_id)
        return Erasure(employee_id=employee_id, source_user_id=link, scrubbed_changes=own + quoted, suppressed=suppress)


def _scrub_own(conn: Connection, tenant_id: str, employee_id: int, link: str | None) -> int:
    """Every name and email of the person's own run changes (by employee id and by link); how many rows."""
    mine = RunChange.employee_id == employee_id
    if link is not None:
        mine = or_(mine, RunChange.source_user_id == link)
    scrub = {f"{side}_{field}": None for field in PERSONAL for side in ("old", "new")}
    personal = or_(*(getattr(RunChange, column).is_not(None) for column in scrub))
    done = conn.execute(update(RunChange).where(RunChange.tenant_id == tenant_id, mine, personal).values(**scrub))
    return int(done.rowcount or 0)


def _scrub_quoted(conn: Connection, tenant_id: str, mailboxes: Collection[str]) -> int:
    """The person's addresses (`mailboxes`, in normal form) wherever another row of the tenant quotes them, in
    any spelling: those emails become null, the rest of the row stays. How many rows."""
    quoted = union(
        select(RunChange.old_email.label("email")).where(
            RunChange.tenant_id == tenant_id, RunChange.old_email.is_not(None)
        ),
        select(RunChange.new_email.label("email")).where(
            RunChange.tenant_id == tenant_id, RunChange.new_email.is_not(None)
        ),
    ).subquery()
    spellings = [
        email for email in conn.execute(select(quoted.c.email)).scalars() if normalize_email(email.strip()) in mailboxes
    ]
    if not spellings:
        return 0
    old, new = RunChange.old_email, RunChange.new_email
    done = conn.execute(
        update(RunChange)
        .where(RunChange.tenant_id == tenant_id, or_(old.in_(spellings), new.in_(spellings)))
        .values(
            old_email=case((old.in_(spellings), None), else_=old),
            new_email=case((new.in_(spellings), None), else_=new),
        )
    )
    return int(done.rowcount or 0)
