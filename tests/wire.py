"""Tiny Unified.to tenants in the API's own wire format, for flow and CLI tests."""

from __future__ import annotations

from typing import Any


def person(
    user_id: str, email: str | None, first: str = "Anna", last: str = "Muster", *, active: bool = True, **extra: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": user_id,
        "name": f"{first} {last}",
        "first_name": first,
        "last_name": last,
        "emails": [{"email": email, "type": "WORK"}] if email else [],
        "employment_status": "ACTIVE" if active else "INACTIVE",
        "date_of_birth": "1980-01-01",  # never to be stored
        "title": "Engineer",
    }
    record.update(extra)
    return record


def group(group_id: str, name: str, members: list[str], parent: str | None = None) -> dict[str, Any]:
    return {"id": group_id, "name": name, "parent_id": parent, "user_ids": members, "type": "TEAM"}


def dataset(employees: list[dict[str, Any]], groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {"employees": employees, "groups": groups}
