"""Explain one person (`provision explain`, `GET /tenants/{t}/explain`): their source record, the groups that put
them in or out of scope, the employee they match and by which rule, and what the next run would do to them and why.

Read-only, and no second implementation of the rules: the tenant's source is read once and planned by the sync's
own stages (`pipeline.plan_snapshot` without an engine stores nothing), and the person is picked out of what the
stages decided. Only the flatten and filter results are kept on the way (their functions are called as the run
calls them), for the groups and the scope verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import polars as pl
from sqlalchemy import Engine, or_, select

from domain.emails import normalize_email
from domain.errors import ExplainedError, NotFoundError
from pipeline import PLAIN, Progress, Selection, plan_snapshot
from store.models import Employee
from store.repo import integration_settings, policy_of
from tasks.extract import source_config
from tasks.filter import Scope
from tasks.flatten import FlatGroups, ancestry
from tasks.validate import Guard

# The source user's attributes shown: the allowed ones (design.md, Words), nothing else the edge keeps.
SOURCE_ATTRIBUTES = ("user_id", "email", "first_name", "last_name", "display_name", "employment_status")

# What a plan row without an employee says about its source user, by rule of design.md. Any other action (a
# newer one) is shown as the plan row carries it, without a rule.
_UNMATCHED = {
    "created": (3, "no employee matches it (rule 3): it becomes a new employee, linked"),
    "skipped_inactive": (3, "no employee matches it and it is inactive in the source (rule 3): none is created"),
    "conflict": (6, "a conflict (rule 6): nothing is applied for it"),  # the plan row's reason says which
}

_log = logging.getLogger("provisioning.explain")


class UnknownPerson(NotFoundError):
    """Neither the tenant's source nor its employees know the person asked about."""


class ExplainQueryError(ExplainedError):
    """The person was not named by exactly one of email and source id."""


def explain_person(
    engine: Engine, tenant: str, *, email: str | None = None, source_id: str | None = None
) -> dict[str, Any]:
    """One person of `tenant`, by email (compared as matching compares it) or by source user id: a JSON-ready
    document of their source record(s), groups, scope, match and the next run's outcome for them and for
    every employee concerned. Writes nothing."""
    if (email is None) == (source_id is None):
        raise ExplainQueryError("Name the person by either an email or a source id, not both or neither.")
    wanted_norm = normalize_email(email.strip()) if email is not None else None
    integration = integration_settings(engine, tenant)  # connected, with a selection: as a run would need
    selection = Selection.of(integration)

    kept: dict[str, Any] = {}
    stages = replace(
        PLAIN, flatten=_keeping(kept, "flatten", PLAIN.flatten), filter=_keeping(kept, "filter", PLAIN.filter)
    )
    snapshot = stages.extract(source_config(integration))
    # Configured from the integration as `pipeline.plan_run` configures a run (selection, guard, policy), but
    # without an engine: the group list is not stored, and nothing is loaded.
    planned = plan_snapshot(
        tenant,
        snapshot,
        selection,
        guard=Guard(max_share=integration.guard_max_share, min_count=integration.guard_min_count),
        policy=policy_of(integration),
        stages=stages,
        progress=Progress(log=_log.debug),
        suppress=True,  # as the run would: a suppressed (erased) person gets no outcome
    )
    flat: FlatGroups = kept["flatten"]
    scope: Scope = kept["filter"]

    users = snapshot.users
    found = users.filter(
        (pl.col("email_norm") == wanted_norm) if wanted_norm is not None else (pl.col("user_id") == source_id)
    )
    found_ids = found.get_column("user_id").drop_nulls().unique().to_list()
    found_norms = found.get_column("email_norm").drop_nulls().unique().to_list()
    plan = planned.plan
    rows_of_users = plan.filter(pl.col("source_user_id").is_in(found_ids))
    employees = _employees(
        engine,
        tenant,
        norms=[*found_norms, *([wanted_norm] if wanted_norm else [])],
        links=[*found_ids, *([source_id] if source_id else [])],
        ids=rows_of_users.get_column("employee_id").drop_nulls().to_list(),
    )
    if found.is_empty() and not employees:
        named = "that email" if email is not None else f"source id {source_id!r}"
        raise UnknownPerson(f"Neither the source of tenant {tenant!r} nor its employees know {named}.")

    names = dict(zip(flat.groups.get_column("group_id"), flat.groups.get_column("name"), strict=True))
    selected = set(selection.group_ids)
    in_scope = set(scope.users.get_column("record").to_list())
    quarantined = dict(
        zip(planned.quarantine.get_column("record"), planned.quarantine.get_column("reason"), strict=True)
    )
    employee_rows = {
        row["employee_id"]: row
        for row in plan.filter(pl.col("employee_id").is_in(list(employees))).iter_rows(named=True)
    }
    source_users = [
        _source_user(
            user,
            groups=_groups(user["user_id"], snapshot.groups, snapshot.memberships, flat, names, selected),
            in_scope=user["record"] in in_scope,
            quarantine=quarantined.get(user["record"]),
            selection=selection,
            own_row=next(
                (
                    r
                    for r in rows_of_users.iter_rows(named=True)
                    if r["employee_id"] is None and r["source_user_id"] == user["user_id"]
                ),
                None,
            ),
            employees=employees,
            employee_rows=employee_rows,
        )
        for user in found.iter_rows(named=True)
    ]
    return {
        "tenant": tenant,
        "query": {"email": email} if email is not None else {"source_id": source_id},
        "selection": {
            "all_users": selection.all_users,
            "groups": [{"group_id": g, "name": names.get(g)} for g in selection.group_ids],
            "missing_groups": planned.missing_groups,
        },
        "stopped_by_guard": planned.stop_reason,
        "source_users": source_users,
        "employees": [
            {**e, "relation": _relation(e, found_ids, source_id), "next_run": _outcome(employee_rows.get(i))}
            for i, e in employees.items()
        ],
    }


def _keeping(kept: dict[str, Any], name: str, stage: Callable[..., Any]) -> Callable[..., Any]:
    """The stage as it is, its result also kept under `name`."""

    def keeping(*args: Any, **kwargs: Any) -> Any:
        kept[name] = result = stage(*args, **kwargs)
        return result

    return keeping


def _employees(
    engine: Engine, tenant: str, *, norms: list[str], links: list[str], ids: list[int]
) -> dict[int, dict[str, Any]]:
    """The employees concerned, by id: holding one of these emails, linked to one of these source ids, or
    named by the person's plan rows. One query."""
    query = (
        select(
            Employee.id,
            Employee.email,
            Employee.first_name,
            Employee.last_name,
            Employee.display_name,
            Employee.status,
            Employee.source_user_id,
        )
        .where(
            Employee.tenant_id == tenant,
            or_(Employee.email_norm.in_(norms), Employee.source_user_id.in_(links), Employee.id.in_(ids)),
        )
        .order_by(Employee.id)
    )
    with engine.connect() as conn:
        return {
            row.id: {
                "employee_id": row.id,
                "email": row.email,
                "first_name": row.first_name,
                "last_name": row.last_name,
                "display_name": row.display_name,
                "status": row.status,
                "link": row.source_user_id,
            }
            for row in conn.execute(query)
        }


def _groups(
    user_id: str | None,
    groups: pl.DataFrame,
    memberships: pl.DataFrame,
    flat: FlatGroups,
    names: dict[str, str | None],
    selected: set[str],
) -> list[dict[str, Any]]:
    """The user's groups, direct ones first, then those it is in through a child group (`via` names the direct
    groups it inherits them from), each marked selected or not."""
    if user_id is None:
        return []
    direct = set(memberships.filter(pl.col("user_id") == user_id).get_column("group_id").to_list())
    every = set(flat.memberships.filter(pl.col("user_id") == user_id).get_column("group_id").to_list())
    closure = ancestry(groups, memberships).filter(pl.col("group_id").is_in(list(direct)))
    via: dict[str, list[str]] = {}
    for child, ancestor in closure.iter_rows():
        if ancestor not in direct:
            via.setdefault(ancestor, []).append(child)
    listed = [
        {
            "group_id": g,
            "name": names.get(g),
            "selected": g in selected,
            "inherited": g not in direct,
            "via": sorted(via.get(g, [])),
        }
        for g in every | direct
    ]
    return sorted(listed, key=lambda g: (g["inherited"], g["name"] or "", g["group_id"]))


def _scope(groups: list[dict[str, Any]], in_scope: bool, selection: Selection) -> dict[str, Any]:
    chosen = [g for g in groups if g["selected"]]
    shown = ", ".join(_group_name(g) for g in chosen)
    if selection.all_users:
        return {"verdict": "all_users", "because": "the tenant syncs all users", "selected_groups": []}
    if in_scope:
        return {
            "verdict": "in_selected_group",
            "because": f"a member of the selected group(s) {shown}",
            "selected_groups": [g["group_id"] for g in chosen],
        }
    because = (
        f"none of its groups ({', '.join(_group_name(g) for g in groups)}) is selected" if groups else "in no group"
    )
    return {"verdict": "outside", "because": because, "selected_groups": []}


def _group_name(group: dict[str, Any]) -> str:
    return f"{group['name']} ({group['group_id']})" if group["name"] else group["group_id"]


def _source_user(
    user: dict[str, Any],
    *,
    groups: list[dict[str, Any]],
    in_scope: bool,
    quarantine: str | None,
    selection: Selection,
    own_row: dict[str, Any] | None,
    employees: dict[int, dict[str, Any]],
    employee_rows: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "record": {name: user[name] for name in SOURCE_ATTRIBUTES},
        "groups": groups,
        "scope": _scope(groups, in_scope, selection),
        "quarantined": quarantine,
        "match": _match(user["user_id"], in_scope, quarantine, own_row, employees, employee_rows),
        "next_run": _outcome(own_row),
    }


def _match(
    user_id: str | None,
    in_scope: bool,
    quarantine: str | None,
    own_row: dict[str, Any] | None,
    employees: dict[int, dict[str, Any]],
    employee_rows: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    """The employee this source user is, and by which rule of design.md; read off the plan and the links."""
    not_matched = (
        f"quarantined ({quarantine})"
        if quarantine
        else "outside the selected groups"
        if not in_scope
        else (own_row or {}).get("reason")
    )
    linked = next((i for i, e in employees.items() if user_id is not None and e["link"] == user_id), None)
    if linked is not None:
        how = "linked to it by its source id (rule 1)"
        return {
            "rule": 1,
            "employee_id": linked,
            "how": how + (f", but the next run does not match it: {not_matched}" if not_matched else ""),
        }
    by_email = next(
        (i for i, row in employee_rows.items() if row["source_user_id"] == user_id and employees[i]["link"] is None),
        None,
    )
    if by_email is not None:
        return {
            "rule": 2,
            "employee_id": by_email,
            "how": "an unlinked employee with the same email (rule 2): the next run links it",
        }
    if own_row is not None:
        rule, how = _UNMATCHED.get(own_row["action"], (None, f"no employee matches it ({own_row['action']})"))
        return {"rule": rule, "employee_id": None, "how": how}
    return {"rule": None, "employee_id": None, "how": f"not matched: {not_matched or 'no plan row'}"}


def _relation(employee: dict[str, Any], found_ids: list[str], source_id: str | None) -> str:
    """How an employee concerns the person: linked to their source user, or holding their email."""
    link = employee["link"]
    if link is not None and link in found_ids:
        return f"linked to source user {link}"
    if link is not None and link == source_id:
        return f"linked to source user {link}, which the source does not list"
    holds = "has this email" if source_id is None else "has the email of this source user"
    if link is None:
        return f"{holds}, not linked"
    return f"{holds}, linked to another source user ({link})" if found_ids else f"{holds}, linked to source user {link}"


def _outcome(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A plan row as shown: its action and reason as the plan carries them, whichever they are, the new status,
    and each changed field old -> new."""
    if row is None:
        return None
    fields = [f for f in (row.get("changed_fields") or "").split(",") if f]
    return {
        "action": row["action"],
        "reason": row.get("reason"),
        "new_status": row.get("new_status"),
        "changed_fields": fields,
        "changes": {
            f: {"old": row.get(f"old_{f}"), "new": row.get(f"new_{f}")}
            for f in fields
            if f"old_{f}" in row or f"new_{f}" in row
        },
    }
