"""The deprovisioning policy (design.md, "Lifecycle after matching"): flag, deactivate, delete after a grace
period; rehire restores; the guard stops a mass delete; a dry run shows it; nothing happens to an employee
the run could not judge. Hand-written tables for the rule, then runs on SQLite and Postgres through the
pipeline's own stages, with the grace period's clock set by the test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine

from domain.policy import Policy, PolicyError
from store.models import utcnow
from store.repo import add_employee, add_tenant, list_employees, run_changes
from tasks.match import DEACTIVATED, match, with_policy
from tasks.validate import Guard, validate_plan
from tests.frames import employee, employees, outcome, source_user, users
from tests.runs import snapshot_of, sync_snapshot

NOW = utcnow()
DAY = timedelta(days=1)
FLAG, DEACTIVATE, DELETE = Policy("flag"), Policy("deactivate"), Policy("delete", grace_days=30)


def planned(
    policy: Policy, src: list[dict[str, Any]], emp: list[dict[str, Any]], held: tuple[str, ...] = ()
) -> pl.DataFrame:
    plan = match(users(*src), employees(*emp), pl.Series(list(held), dtype=pl.String()))
    return validate_plan(with_policy(plan, policy, NOW))


# ---- the rule, on hand-written tables ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "action", "deactivated"),
    [(FLAG, "non_matching", False), (DEACTIVATE, "non_matching", True), (DELETE, "non_matching", True)],
)
def test_a_newly_flagged_employee_is_flagged_in_every_mode_and_deactivated_unless_the_mode_is_flag(
    policy: Policy, action: str, deactivated: bool
) -> None:
    row = outcome(planned(policy, [], [employee(1, "a@acme.de", link="u1", status="synced")]), employee_id=1)
    assert (row["action"], row["new_status"], row["new_deactivated"]) == (action, "non_matching", deactivated)
    assert row["changed_fields"] == ("status,deactivated" if deactivated else "status")


def test_an_employee_flagged_before_is_deactivated_when_the_mode_becomes_deactivate() -> None:
    old = employee(1, "a@acme.de", link="u1", status="non_matching", flagged_at=NOW - 3 * DAY)
    off = employee(2, "b@acme.de", link="u2", status="terminated", flagged_at=NOW - 3 * DAY)
    plan = planned(DEACTIVATE, [source_user("u2", "b@acme.de", active=False)], [old, off])
    for employee_id in (1, 2):
        row = outcome(plan, employee_id=employee_id)
        assert (row["action"], row["reason"], row["changed_fields"]) == ("deactivated", DEACTIVATED, "deactivated")
    assert outcome(planned(FLAG, [], [old]), employee_id=1)["action"] == "still_non_matching"


def test_delete_waits_for_the_grace_period_counted_from_when_the_employee_was_first_flagged() -> None:
    young = employee(1, "a@acme.de", link="u1", status="non_matching", flagged_at=NOW - 29 * DAY, deactivated=True)
    due = employee(2, "b@acme.de", link="u2", status="terminated", flagged_at=NOW - 30 * DAY, deactivated=True)
    plan = planned(DELETE, [source_user("u2", "b@acme.de", active=False)], [young, due])
    assert outcome(plan, employee_id=1)["action"] == "still_non_matching"
    gone = outcome(plan, employee_id=2)
    assert gone["action"] == "deleted" and "30 days" in gone["reason"]
    assert gone["old_email"] == "b@acme.de" and gone["new_email"] is None and gone["new_status"] is None
    assert gone["changed_fields"] == "email,first_name,last_name,display_name,status"


def test_the_run_that_flags_an_employee_never_deletes_it() -> None:
    plan = planned(Policy("delete", grace_days=1), [], [employee(1, "a@acme.de", link="u1", status="synced")])
    assert outcome(plan, employee_id=1)["action"] == "non_matching"


def test_a_returning_source_user_is_synced_and_active_again_in_every_mode() -> None:
    for policy in (FLAG, DEACTIVATE, DELETE):
        back = employee(1, "a@acme.de", link="u1", status="non_matching", flagged_at=NOW - 90 * DAY, deactivated=True)
        row = outcome(planned(policy, [source_user("u1", "a@acme.de")], [back]), employee_id=1)
        assert (row["action"], row["new_status"], row["new_deactivated"]) == ("reactivated", "synced", False)
        assert row["changed_fields"] == "status,deactivated"


def test_employees_the_run_cannot_judge_are_neither_deactivated_nor_deleted() -> None:
    # A quarantined source user (held) and an email conflict: kept exactly as they are, whatever the age.
    held = employee(1, "a@acme.de", link="u1", status="terminated", flagged_at=NOW - 90 * DAY)
    clash = employee(2, "b@acme.de", link="u2", status="terminated", flagged_at=NOW - 90 * DAY)
    taken = employee(3, "c@acme.de")  # a hand-made employee keeps c@, so u2's move onto it is a conflict
    src = [source_user("u2", "c@acme.de", active=False)]
    plan = planned(DELETE, src, [held, clash, taken], held=("u1",))
    assert outcome(plan, employee_id=1)["action"] == "kept"
    assert outcome(plan, employee_id=2)["action"] == "conflict"
    assert not plan.filter(pl.col("employee_id").is_in([1, 2]))["new_deactivated"].any()


@pytest.mark.parametrize(("mode", "grace"), [("erase", 30), ("delete", 0), ("delete", 4000)])
def test_a_policy_outside_the_modes_or_the_grace_range_is_refused_in_one_sentence(mode: str, grace: int) -> None:
    with pytest.raises(PolicyError) as refusal:
        Policy(mode, grace_days=grace)
    assert str(refusal.value).count(".") == 1


# ---- runs on SQLite and Postgres -----------------------------------------------------------------------


def state(engine: Engine) -> dict[str, tuple[str, bool]]:
    return {e["email"]: (e["status"], e["deactivated"]) for e in list_employees(engine, "acme")}


def staff(n: int) -> list[dict[str, Any]]:
    return [source_user(f"u{i}", f"p{i}@acme.example") for i in range(n)]


def test_deactivate_marks_a_leaver_inactive_and_a_rehire_restores_it(engine: Engine) -> None:
    add_tenant(engine, "acme")
    people = staff(3)
    sync_snapshot(engine, "acme", snapshot_of(users(*people)), policy=DEACTIVATE)
    _, run = sync_snapshot(engine, "acme", snapshot_of(users(*people[:2])), policy=DEACTIVATE)
    assert (run.counts["non_matching"], run.counts["deactivated"]) == (1, 1)
    assert state(engine)["p2@acme.example"] == ("non_matching", True)
    assert state(engine)["p0@acme.example"] == ("synced", False)

    _, run = sync_snapshot(engine, "acme", snapshot_of(users(*people)), policy=DEACTIVATE)
    assert run.counts["reactivated"] == 1
    assert state(engine)["p2@acme.example"] == ("synced", False)


def test_delete_after_the_grace_period_then_the_person_comes_back_as_a_new_linked_employee(engine: Engine) -> None:
    add_tenant(engine, "acme")
    people = staff(3)
    sync_snapshot(engine, "acme", snapshot_of(users(*people)), policy=DELETE)
    sync_snapshot(engine, "acme", snapshot_of(users(*people[:2])), policy=DELETE)  # p2 flagged now
    (first,) = [e for e in list_employees(engine, "acme") if e["email"] == "p2@acme.example"]
    assert first["flagged_at"] is not None

    _, early = sync_snapshot(engine, "acme", snapshot_of(users(*people[:2])), policy=DELETE, now=utcnow() + 29 * DAY)
    assert early.counts["deleted"] == 0 and "p2@acme.example" in state(engine)

    run_id, due = sync_snapshot(engine, "acme", snapshot_of(users(*people[:2])), policy=DELETE, now=utcnow() + 31 * DAY)
    assert due.counts["deleted"] == 1
    assert "p2@acme.example" not in state(engine)
    (record,) = [c for c in run_changes(engine, run_id) if c["action"] == "deleted"]
    assert (record["old_email"], record["new_email"], record["source_user_id"]) == ("p2@acme.example", None, "u2")

    _, back = sync_snapshot(engine, "acme", snapshot_of(users(*people)), policy=DELETE, now=utcnow() + 32 * DAY)
    assert back.counts["created"] == 1
    (again,) = [e for e in list_employees(engine, "acme") if e["email"] == "p2@acme.example"]
    assert (again["status"], again["link"], again["deactivated"]) == ("synced", "u2", False)


def test_a_dry_run_lists_the_deletions_and_deletes_nothing(engine: Engine) -> None:
    add_tenant(engine, "acme")
    people = staff(3)
    sync_snapshot(engine, "acme", snapshot_of(users(*people)), policy=DELETE)
    sync_snapshot(engine, "acme", snapshot_of(users(people[0])), policy=DELETE)
    later = utcnow() + 40 * DAY
    run_id, dry = sync_snapshot(engine, "acme", snapshot_of(users(people[0])), policy=DELETE, now=later, dry_run=True)
    assert dry.counts["deleted"] == 2
    assert sorted(c["old_email"] for c in run_changes(engine, run_id) if c["action"] == "deleted") == [
        "p1@acme.example",
        "p2@acme.example",
    ]
    assert len(state(engine)) == 3


def test_the_guard_stops_a_mass_delete_and_an_override_applies_it(engine: Engine) -> None:
    add_tenant(engine, "acme")
    people = staff(40)
    sync_snapshot(engine, "acme", snapshot_of(users(*people)))
    sync_snapshot(engine, "acme", snapshot_of(users(*people[:28])))  # 12 flagged under `flag`: nothing else
    later = utcnow() + 31 * DAY
    _, stopped = sync_snapshot(
        engine, "acme", snapshot_of(users(*people[:28])), policy=DELETE, now=later, guard=Guard()
    )
    assert stopped.stop_reason is not None and "12 employees" in stopped.stop_reason
    assert len(state(engine)) == 40
    _, applied = sync_snapshot(engine, "acme", snapshot_of(users(*people[:28])), policy=DELETE, now=later)
    assert applied.counts["deleted"] == 12 and len(state(engine)) == 28


def test_a_hand_made_employee_never_matched_is_flagged_then_deleted_like_any_other(engine: Engine) -> None:
    add_tenant(engine, "acme")
    add_employee(engine, "acme", email="temp@acme.example", first_name="Tea", last_name="Temp")
    sync_snapshot(engine, "acme", snapshot_of(users(*staff(2))), policy=DELETE)
    assert state(engine)["temp@acme.example"] == ("non_matching", True)
    _, run = sync_snapshot(engine, "acme", snapshot_of(users(*staff(2))), policy=DELETE, now=utcnow() + 31 * DAY)
    assert run.counts["deleted"] == 1 and "temp@acme.example" not in state(engine)
