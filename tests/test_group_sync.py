"""Group sync (issue 12, item 4; design.md, "Lifecycle after matching"): the employees' memberships of the
selected groups are stored, kept in step by every run, and each run records who joined and who left which
group. On SQLite and Postgres, through the pipeline's own stages (no Prefect)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
from sqlalchemy import Engine

from domain.policy import Policy
from pipeline import Selection
from sources.model import GROUP_SCHEMA, MEMBERSHIP_SCHEMA, SourceSnapshot
from store.frames import read_memberships
from store.models import utcnow
from store.repo import (
    add_tenant,
    connect,
    list_employees,
    run_changes,
    select_groups,
    selected_groups,
)
from tests.frames import source_user, users
from tests.runs import sync_snapshot

PEOPLE = [source_user(f"u{i}", f"p{i}@acme.example") for i in range(1, 6)]


def source(
    members: dict[str, list[str]], *, names: dict[str, str] | None = None, people: list[dict[str, Any]] = PEOPLE
) -> SourceSnapshot:
    """Groups A and B under the root R, C a child of A; `members` gives each group's direct members."""
    names = {"R": "Company", "A": "Sales", "B": "Operations", "C": "Sales Berlin", **(names or {})}
    parents = {"R": None, "A": "R", "B": "R", "C": "A"}
    groups = pl.DataFrame(
        [{"group_id": g, "name": names[g], "parent_id": parents[g]} for g in parents], schema=GROUP_SCHEMA
    )
    memberships = pl.DataFrame(
        [{"group_id": g, "user_id": u} for g, us in members.items() for u in us], schema=MEMBERSHIP_SCHEMA
    )
    return SourceSnapshot(users=users(*people), groups=groups, memberships=memberships)


def held(engine: Engine) -> set[tuple[str, str]]:
    """(email, group id) of every stored membership."""
    emails = {e["id"]: e["email"] for e in _employees(engine)}
    return {(emails[r["employee_id"]], r["group_id"]) for r in read_memberships(engine, "acme").iter_rows(named=True)}


def _employees(engine: Engine) -> list[dict[str, Any]]:
    from store.repo import employee_page

    return employee_page(engine, "acme", status=None, search=None, offset=0, limit=500)[1]


def moves(engine: Engine, run_id: str) -> set[tuple[str, str | None, str]]:
    return {
        (c["action"], c["source_user_id"], c["group_id"])
        for c in run_changes(engine, run_id)
        if c["action"] in ("joined", "left")
    }


SALES_AND_OPS = Selection(group_ids=("A", "B"))
START = {"A": ["u1"], "B": ["u2"], "C": ["u3"], "R": ["u4"]}


def test_the_first_run_stores_the_memberships_of_the_selected_groups_inherited_ones_included(engine: Engine) -> None:
    add_tenant(engine, "acme")
    run_id, run = sync_snapshot(engine, "acme", source(START), selection=SALES_AND_OPS)
    # u3 is in Sales through Sales Berlin (not selected itself); u4, only in the root, is out of scope.
    assert held(engine) == {("p1@acme.example", "A"), ("p2@acme.example", "B"), ("p3@acme.example", "A")}
    assert (run.counts["joined"], run.counts["left"]) == (3, 0)
    assert moves(engine, run_id) == {("joined", "u1", "A"), ("joined", "u2", "B"), ("joined", "u3", "A")}
    again_id, again = sync_snapshot(engine, "acme", source(START), selection=SALES_AND_OPS)
    assert (again.counts["joined"], again.counts["left"]) == (0, 0) and moves(engine, again_id) == set()


def test_a_move_between_groups_is_one_left_and_one_joined(engine: Engine) -> None:
    add_tenant(engine, "acme")
    sync_snapshot(engine, "acme", source(START), selection=SALES_AND_OPS)
    run_id, run = sync_snapshot(engine, "acme", source({**START, "A": [], "B": ["u1", "u2"]}), selection=SALES_AND_OPS)
    assert moves(engine, run_id) == {("left", "u1", "A"), ("joined", "u1", "B")}
    assert (run.counts["joined"], run.counts["left"]) == (1, 1)
    assert ("p1@acme.example", "B") in held(engine) and ("p1@acme.example", "A") not in held(engine)


def test_a_renamed_group_keeps_its_members_and_shows_its_new_name(engine: Engine) -> None:
    add_tenant(engine, "acme")
    connect(engine, "acme", provider="entra", connection_id="conn-acme", base_url="https://api.unified.to")
    renamed = source(START, names={"A": "Sales & Marketing"})
    sync_snapshot(engine, "acme", source(START), selection=SALES_AND_OPS)
    run_id, run = sync_snapshot(engine, "acme", renamed, selection=SALES_AND_OPS)
    assert (run.counts["joined"], run.counts["left"]) == (0, 0) and moves(engine, run_id) == set()

    select_groups(engine, "acme", ["A", "B"], all_users=False)
    shown = {g["group_id"]: (g["name"], g["employees"]) for g in selected_groups(engine, "acme")}
    assert shown == {"A": ("Sales & Marketing", 2), "B": ("Operations", 1)}
    members = sorted(e["email"] for e in list_employees(engine, "acme", group="A"))
    assert members == ["p1@acme.example", "p3@acme.example"]


def test_a_group_removed_from_the_selection_loses_its_members_who_are_flagged_moved_out(engine: Engine) -> None:
    add_tenant(engine, "acme")
    sync_snapshot(engine, "acme", source(START), selection=SALES_AND_OPS)
    run_id, run = sync_snapshot(engine, "acme", source(START), selection=Selection(group_ids=("B",)))
    assert moves(engine, run_id) == {("left", "u1", "A"), ("left", "u3", "A")}
    assert (run.counts["non_matching"], run.counts["left"]) == (2, 2)
    assert held(engine) == {("p2@acme.example", "B")}
    statuses = {e["email"]: (e["status"], e["reason"]) for e in list_employees(engine, "acme")}
    assert statuses["p1@acme.example"][0] == "non_matching"
    assert statuses["p1@acme.example"][1].startswith("moved out of the selected groups")


def test_with_all_users_every_listed_group_is_kept_and_a_deleted_employee_leaves_its_groups(engine: Engine) -> None:
    add_tenant(engine, "acme")
    everyone = Selection(all_users=True)
    sync_snapshot(engine, "acme", source(START), selection=everyone)
    assert ("p3@acme.example", "C") in held(engine) and ("p3@acme.example", "R") in held(engine)
    assert {g for e, g in held(engine) if e == "p3@acme.example"} == {"A", "C", "R"}

    # Disabled in the source: terminated, still a member of its groups; deleted after the grace period.
    policy = Policy("delete", grace_days=30)
    disabled = [source_user("u3", "p3@acme.example", active=False) if p["user_id"] == "u3" else p for p in PEOPLE]
    sync_snapshot(engine, "acme", source(START, people=disabled), selection=everyone, policy=policy)
    assert {g for e, g in held(engine) if e == "p3@acme.example"} == {"A", "C", "R"}
    later = utcnow() + timedelta(days=31)
    run_id, run = sync_snapshot(
        engine, "acme", source(START, people=disabled), selection=everyone, policy=policy, now=later
    )
    assert run.counts["deleted"] == 1 and run.counts["left"] == 3
    assert moves(engine, run_id) == {("left", "u3", "A"), ("left", "u3", "C"), ("left", "u3", "R")}
    assert not {g for e, g in held(engine) if e == "p3@acme.example"}


def test_an_employee_gone_from_the_source_leaves_its_groups_in_the_run_that_flags_it(engine: Engine) -> None:
    add_tenant(engine, "acme")
    sync_snapshot(engine, "acme", source(START), selection=SALES_AND_OPS)
    without_u3 = [p for p in PEOPLE if p["user_id"] != "u3"]
    run_id, run = sync_snapshot(engine, "acme", source(START, people=without_u3), selection=SALES_AND_OPS)
    assert run.counts["non_matching"] == 1 and moves(engine, run_id) == {("left", "u3", "A")}


def test_a_quarantined_source_user_keeps_its_employees_memberships(engine: Engine) -> None:
    add_tenant(engine, "acme")
    sync_snapshot(engine, "acme", source(START), selection=SALES_AND_OPS)
    broken = [*PEOPLE[:2], source_user("u3", "not an email"), *PEOPLE[3:]]
    run_id, _ = sync_snapshot(engine, "acme", source(START, people=broken), selection=SALES_AND_OPS)
    assert ("p3@acme.example", "A") in held(engine) and moves(engine, run_id) == set()


def test_a_dry_run_records_the_moves_and_writes_no_membership(engine: Engine) -> None:
    add_tenant(engine, "acme")
    run_id, run = sync_snapshot(engine, "acme", source(START), selection=SALES_AND_OPS, dry_run=True)
    assert run.counts["joined"] == 3 and len(moves(engine, run_id)) == 3
    assert read_memberships(engine, "acme").is_empty()


def test_an_employee_deleted_by_hand_or_erased_takes_its_memberships_with_it(engine: Engine) -> None:
    # why: employee_groups has no foreign key to cascade (store/models.py); every delete removes them itself
    from admin.operations import delete_employee, delete_employees
    from store.erase import erase_employee

    add_tenant(engine, "acme")
    everyone = Selection(all_users=True)
    sync_snapshot(engine, "acme", source(START), selection=everyone)
    ids = {e["email"]: e["id"] for e in _employees(engine)}
    off = [
        source_user(p["user_id"], p["email"], active=False) if p["user_id"] in ("u1", "u2", "u3") else p for p in PEOPLE
    ]
    sync_snapshot(engine, "acme", source(START, people=off), selection=everyone)  # terminated, still members
    before = set(read_memberships(engine, "acme").get_column("employee_id").to_list())
    assert {ids[f"p{i}@acme.example"] for i in (1, 2, 3)} <= before

    delete_employee(engine, "acme", ids["p1@acme.example"], actor="test")
    delete_employees(engine, "acme", [ids["p2@acme.example"]], status="terminated", actor="test")
    erase_employee(engine, "acme", email="P3@acme.example")
    after = set(read_memberships(engine, "acme").get_column("employee_id").to_list())
    assert before - after == {ids["p1@acme.example"], ids["p2@acme.example"], ids["p3@acme.example"]}
    assert after <= {e["id"] for e in _employees(engine)}  # no membership of an employee that is gone
