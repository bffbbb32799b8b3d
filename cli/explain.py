"""`provision explain`: one person, read-only, as the next run sees them (admin/explain.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.common import emit, engine, explained_errors, fail

_SCOPES = {
    "all_users": "all users are synced",
    "in_selected_group": "in a selected group",
    "outside": "outside the selected groups",
}
_LABELS = [
    ("email", "email"),
    ("first_name", "first name"),
    ("last_name", "last name"),
    ("display_name", "display name"),
    ("employment_status", "employment"),
]


def explain(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    email: Annotated[str | None, typer.Option(help="The person's email (compared as matching compares it).")] = None,
    source_id: Annotated[str | None, typer.Option(help="The person's user id in the source.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole document as JSON.")] = False,
) -> None:
    """Explain one person, read-only: their source record, the groups that put them in or out of scope, the
    employee they match and by which rule, and what the next run would do to them and why.

    Reads the source once and plans it with the sync's own stages; writes nothing.
    """
    from admin.explain import explain_person

    if (email is None) == (source_id is None):
        fail("Give either --email E or --source-id ID.")
    with explained_errors():
        document = explain_person(engine(), tenant, email=email, source_id=source_id)
    emit(document, as_json, render)


def render(doc: dict[str, Any]) -> None:
    [(key, value)] = doc["query"].items()
    typer.echo(f"Tenant {doc['tenant']}: the person with {key.replace('_', ' ')} {value}")
    selection = doc["selection"]
    chosen = "all users" if selection["all_users"] else ", ".join(_group(g) for g in selection["groups"])
    typer.echo(f"  {'selection':<13} {chosen}")
    if selection["missing_groups"]:
        typer.echo(f"  {'':<13} no longer listed by the source: {', '.join(selection['missing_groups'])}")
    if doc["stopped_by_guard"]:
        typer.echo(
            f"  {'guard':<13} the next run would stop before loading: {doc['stopped_by_guard']}; "
            "below is what it would do with --override-guard"
        )
    for user in doc["source_users"]:
        record = user["record"]
        typer.echo(f"\nSource user {record['user_id'] or '(no id)'}")
        for field, label in _LABELS:
            _line(label, record[field] if record[field] is not None else "-")
        names = {g["group_id"]: g["name"] for g in user["groups"]}
        groups = [
            f"{_group(g)}: {'selected' if g['selected'] else 'not selected'}"
            + (
                f", through {', '.join(_group({'group_id': v, 'name': names.get(v)}) for v in g['via'])}"
                if g["via"]
                else ""
            )
            for g in user["groups"]
        ]
        for i, text in enumerate(groups or ["none"]):
            _line("groups" if i == 0 else "", text)
        _line("scope", f"{_SCOPES.get(user['scope']['verdict'], user['scope']['verdict'])}: {user['scope']['because']}")
        if user["quarantined"]:
            _line("quarantined", user["quarantined"])
        match = user["match"]
        _line("match", f"employee {match['employee_id']}: {match['how']}" if match["employee_id"] else match["how"])
        if user["next_run"]:
            _line("next run", _outcome(user["next_run"]))
    for employee in doc["employees"]:
        name = " ".join(n for n in (employee["first_name"], employee["last_name"]) if n)
        typer.echo(f"\nEmployee {employee['employee_id']}: {employee['email']}, {name or '-'}, {employee['status']}")
        _line("relation", employee["relation"])
        _line("next run", _outcome(employee["next_run"]) if employee["next_run"] else "-")


def _line(label: str, text: str) -> None:
    typer.echo(f"  {label:<13} {text}")


def _group(group: dict[str, Any]) -> str:
    return f"{group['name']} ({group['group_id']})" if group["name"] else group["group_id"]


def _outcome(outcome: dict[str, Any]) -> str:
    """`action (status S): reason; field 'old' -> 'new'; ...`, whatever the action is."""
    changes = [f"{f} {c['old']!r} -> {c['new']!r}" for f, c in outcome["changes"].items()]
    parts = [p for p in (outcome["reason"], "; ".join(changes)) if p]
    status = f" (status {outcome['new_status']})" if outcome["new_status"] else ""
    return f"{outcome['action']}{status}" + (f": {'; '.join(parts)}" if parts else "")
