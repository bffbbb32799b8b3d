"""email_norm recomputed: NFC + lower-case instead of NFC + case folding (domain/emails.py)

Revision ID: 0009
Revises: 0008

Case folding merged different mailboxes (`straße@` and `strasse@`, `ſupport@` and `support@`); the stored
`employees.email_norm` is recomputed with `domain.emails.normalize_email`, in Python, since neither database's
`lower()` is Python's. Only rows that can change are read: those with a non-ASCII email (ASCII addresses
lower-case the same in both forms) and those whose stored form is not their email lower-cased.

Collisions: the new form is finer than the old one (tests/test_email_identity.py: case-folding the new form
of any text gives its old form), so two employees of one tenant with one new form had one old form, which
the unique constraint ruled out. A database edited by hand may still hold such a pair: then the upgrade
stops before writing anything and names the tenant and the employee ids, to be resolved by hand.

The downgrade recomputes the case-folded form (kept here as it was), with the same check: two employees
that only the new form tells apart (`straße@` and `strasse@` in one tenant) stop it.
"""

import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from domain.emails import normalize_email

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_employees = sa.table(
    "employees",
    sa.column("id", sa.Integer()),
    sa.column("tenant_id", sa.String()),
    sa.column("email", sa.String()),
    sa.column("email_norm", sa.String()),
)


def _casefolded(address: str) -> str:
    """The form stored before this revision (domain/emails.py as it was)."""
    if address.isascii():
        return address.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", address).casefold())


def _non_ascii(column: sa.ColumnElement[str], dialect: str) -> sa.ColumnElement[bool]:
    """The email holds a non-ASCII character: more bytes than characters in UTF-8."""
    octets = (
        sa.func.octet_length(column) if dialect == "postgresql" else sa.func.length(sa.cast(column, sa.LargeBinary))
    )
    return octets != sa.func.length(column)


def _recompute(form: Callable[[str], str]) -> None:
    conn = op.get_bind()
    e = _employees.c
    candidates = conn.execute(
        sa.select(e.id, e.tenant_id, e.email, e.email_norm)
        .where(sa.or_(_non_ascii(e.email, conn.dialect.name), e.email_norm != sa.func.lower(e.email)))
        .order_by(e.id)
    ).all()
    changed = {row.id: form(row.email) for row in candidates if form(row.email) != row.email_norm}
    if not changed:
        return
    tenant_of = {row.id: row.tenant_id for row in candidates}
    # Who holds each new form once every change is made: the changed rows, and the others as they are.
    holders: dict[tuple[str, str], list[int]] = defaultdict(list)
    for employee_id, norm in changed.items():
        holders[(tenant_of[employee_id], norm)].append(employee_id)
    forms = sorted(set(changed.values()))
    for start in range(0, len(forms), 500):
        others = conn.execute(
            sa.select(e.id, e.tenant_id, e.email_norm).where(e.email_norm.in_(forms[start : start + 500]))
        ).all()
        for row in others:
            if row.id not in changed and (row.tenant_id, row.email_norm) in holders:
                holders[(row.tenant_id, row.email_norm)].append(row.id)
    clashes = sorted((tenant, sorted(ids)) for (tenant, _norm), ids in holders.items() if len(ids) > 1)
    if clashes:
        named = "; ".join(f"tenant {tenant!r}: employees {' and '.join(map(str, ids))}" for tenant, ids in clashes)
        raise RuntimeError(
            f"Recomputing employees.email_norm would give two employees one email ({named}); nothing was changed. "
            "Resolve them by hand (provision employee delete), then upgrade again."
        )
    # Two steps, so that the order of the updates can never trip the unique (tenant, email_norm) constraint.
    update = sa.update(_employees).where(e.id == sa.bindparam("b_id")).values(email_norm=sa.bindparam("b_norm"))
    conn.execute(update, [{"b_id": i, "b_norm": f"migrating:{i}"} for i in changed])
    conn.execute(update, [{"b_id": i, "b_norm": norm} for i, norm in changed.items()])


def upgrade() -> None:
    _recompute(normalize_email)


def downgrade() -> None:
    _recompute(_casefolded)
