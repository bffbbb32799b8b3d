"""Hand-written source users and employees for stage tests: tiny tables, one rule at a time."""

from __future__ import annotations

from typing import Any

import polars as pl

from domain.emails import normalize_email
from schemas.employees import EMPLOYEE_SCHEMA
from sources.model import USER_SCHEMA


def source_user(user_id: str | None, email: str | None, *, active: bool = True, **kw: Any) -> dict[str, Any]:
    first = kw.get("first_name", "Anna")
    last = kw.get("last_name", "Muster")
    return {
        "record": kw.get("record", 0),
        "user_id": user_id,
        "email": email,
        "email_norm": normalize_email(email) if email else None,
        "first_name": first,
        "last_name": last,
        "display_name": kw.get("display_name", f"{first} {last}"),
        "employment_status": kw.get("employment_status", "active" if active else "inactive"),
        "problem": kw.get("problem"),
    }


def users(*rows: dict[str, Any]) -> pl.DataFrame:
    numbered = [{**row, "record": i} for i, row in enumerate(rows)]
    return pl.DataFrame(numbered, schema=USER_SCHEMA)


def employee(
    employee_id: int, email: str, *, link: str | None = None, status: str = "unmanaged", **kw: Any
) -> dict[str, Any]:
    first = kw.get("first_name", "Anna")
    last = kw.get("last_name", "Muster")
    return {
        "employee_id": employee_id,
        "email": email,
        "email_norm": normalize_email(email),
        "first_name": first,
        "last_name": last,
        "display_name": kw.get("display_name", f"{first} {last}"),
        "employment_status": kw.get("employment_status", "active" if status != "terminated" else "inactive"),
        "source_user_id": link,
        "status": status,
        "flagged_at": kw.get("flagged_at"),
        "deactivated": kw.get("deactivated", False),
    }


def employees(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=EMPLOYEE_SCHEMA)


def outcome(plan: pl.DataFrame, *, employee_id: int | None = None, user_id: str | None = None) -> dict[str, Any]:
    """The one plan row of an employee (or of a source user), failing when there is not exactly one."""
    if employee_id is not None:
        rows = plan.filter(pl.col("employee_id") == employee_id)
    else:
        rows = plan.filter(pl.col("source_user_id") == user_id)
    assert rows.height == 1, f"expected one plan row, got {rows.height}: {rows.to_dicts()}"
    return rows.row(0, named=True)
