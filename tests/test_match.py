"""The matching rules of design.md, one test (or more) per rule, on hand-written tables."""

from __future__ import annotations

import polars as pl

from schemas.plan import ACTIONS
from tasks.match import match
from tasks.validate import validate_plan
from tests.frames import employee, employees, outcome, source_user, users


def plan_for(src: pl.DataFrame, emp: pl.DataFrame, held: list[str] | None = None) -> pl.DataFrame:
    plan = match(src, emp, pl.Series(held or [], dtype=pl.String()))
    return validate_plan(plan)  # every plan the rules produce meets the plan contract


# Rule 1
def test_source_user_with_the_linked_id_is_that_employee_even_when_its_email_changed() -> None:
    plan = plan_for(
        users(source_user("u1", "anna.new@acme.de")),
        employees(employee(1, "anna.old@acme.de", link="u1", status="synced")),
    )
    row = outcome(plan, employee_id=1)
    assert row["action"] == "updated"
    assert row["new_email"] == "anna.new@acme.de"
    assert row["changed_fields"] == "email"
    assert plan.filter(pl.col("action") == "created").is_empty()


def test_email_reused_by_a_new_person_does_not_merge_into_the_linked_employee() -> None:
    # why: keycloak#39345 — a new source user holding a leaver's email is not that leaver.
    plan = plan_for(
        users(source_user("u2", "anna@acme.de")),
        employees(employee(1, "anna@acme.de", link="u1", status="synced")),
    )
    assert outcome(plan, employee_id=1)["action"] == "non_matching"
    new = outcome(plan, user_id="u2")
    assert new["action"] == "conflict"
    assert new["employee_id"] is None
    assert "already belongs" in new["reason"]


# Rule 2
def test_first_sync_links_an_unlinked_employee_by_email_ignoring_case_and_unicode_form() -> None:
    decomposed = "Ju\u0308rgen.Mu\u0308ller@ACME.de"  # u + combining diaeresis, other case
    plan = plan_for(
        users(source_user("u1", "jürgen.müller@acme.de")),
        employees(employee(1, decomposed)),
    )
    row = outcome(plan, employee_id=1)
    assert row["action"] == "linked"
    assert row["source_user_id"] == "u1"
    assert row["new_status"] == "synced"
    assert row["new_email"] == "jürgen.müller@acme.de"  # the source's spelling wins


def test_email_matching_ignores_case_but_never_folds_one_mailbox_into_another() -> None:
    plan = plan_for(users(source_user("u1", "strasse@acme.de")), employees(employee(1, "STRASSE@acme.de")))
    assert outcome(plan, employee_id=1)["action"] == "linked"
    plan = plan_for(users(source_user("u1", "straße@acme.de")), employees(employee(1, "STRAßE@acme.de")))
    assert outcome(plan, employee_id=1)["action"] == "linked"
    # why: ß and ss are two mailboxes; case folding made them one and handed Hans's employee to Grete
    plan = plan_for(users(source_user("u1", "straße@acme.de")), employees(employee(1, "STRASSE@acme.de")))
    assert outcome(plan, employee_id=1)["action"] == "non_matching"
    assert outcome(plan, user_id="u1")["action"] == "created"


def test_email_match_never_relinks_an_employee_already_linked_to_another_user() -> None:
    plan = plan_for(
        users(source_user("u1", "a@acme.de"), source_user("u9", "b@acme.de")),
        employees(employee(1, "a@acme.de", link="u1", status="synced"), employee(2, "b@acme.de", link="u2")),
    )
    assert outcome(plan, employee_id=1)["action"] == "unchanged"
    assert outcome(plan, employee_id=2)["action"] == "non_matching"
    assert outcome(plan, user_id="u9")["action"] == "conflict"


def test_employee_created_by_hand_between_syncs_is_matched_by_email() -> None:
    plan = plan_for(
        users(source_user("u1", "a@acme.de"), source_user("u2", "manual@acme.de")),
        employees(employee(1, "a@acme.de", link="u1", status="synced"), employee(2, "Manual@acme.de")),
    )
    assert outcome(plan, employee_id=2)["action"] == "linked"
    assert outcome(plan, employee_id=2)["source_user_id"] == "u2"


# Rule 3
def test_active_unmatched_source_user_becomes_a_new_linked_employee() -> None:
    plan = plan_for(users(source_user("u1", "new@acme.de", first_name="Zoë", last_name="Ødegård")), employees())
    row = outcome(plan, user_id="u1")
    assert row["action"] == "created"
    assert (row["new_email"], row["new_first_name"], row["new_last_name"]) == ("new@acme.de", "Zoë", "Ødegård")
    assert row["new_status"] == "synced"


def test_inactive_unmatched_source_user_is_not_created() -> None:
    plan = plan_for(users(source_user("u1", "gone@acme.de", active=False)), employees())
    assert outcome(plan, user_id="u1")["action"] == "skipped_inactive"
    assert plan.filter(pl.col("action") == "created").is_empty()


# Rule 4
def test_matched_employee_takes_the_source_names_and_email() -> None:
    plan = plan_for(
        users(source_user("u1", "a@acme.de", first_name="Anne", last_name="Meier", display_name="Anne M.")),
        employees(employee(1, "a@acme.de", link="u1", status="synced")),
    )
    row = outcome(plan, employee_id=1)
    assert row["action"] == "updated"
    assert row["changed_fields"] == "first_name,last_name,display_name"
    assert (row["new_first_name"], row["new_last_name"], row["new_display_name"]) == ("Anne", "Meier", "Anne M.")


def test_disabled_source_user_turns_its_employee_terminated() -> None:
    plan = plan_for(
        users(source_user("u1", "a@acme.de", active=False)),
        employees(employee(1, "a@acme.de", link="u1", status="synced")),
    )
    row = outcome(plan, employee_id=1)
    assert (row["action"], row["new_status"]) == ("terminated", "terminated")


def test_terminated_employee_active_again_is_reactivated() -> None:
    # why: keycloak#44108 — a rehire (same source id, active again) restores the employee.
    plan = plan_for(
        users(source_user("u1", "a@acme.de")),
        employees(employee(1, "a@acme.de", link="u1", status="terminated")),
    )
    assert (outcome(plan, employee_id=1)["action"], outcome(plan, employee_id=1)["new_status"]) == (
        "reactivated",
        "synced",
    )


def test_non_matching_employee_matched_again_is_reactivated() -> None:
    plan = plan_for(
        users(source_user("u1", "a@acme.de")),
        employees(employee(1, "a@acme.de", link="u1", status="non_matching")),
    )
    assert outcome(plan, employee_id=1)["action"] == "reactivated"


def test_non_matching_employee_matched_again_while_inactive_becomes_terminated() -> None:
    plan = plan_for(
        users(source_user("u1", "a@acme.de", active=False)),
        employees(employee(1, "a@acme.de", link="u1", status="non_matching")),
    )
    assert outcome(plan, employee_id=1)["new_status"] == "terminated"
    assert outcome(plan, employee_id=1)["action"] == "terminated"


def test_matched_employee_with_nothing_new_is_unchanged() -> None:
    plan = plan_for(
        users(source_user("u1", "a@acme.de")),
        employees(employee(1, "a@acme.de", link="u1", status="synced")),
    )
    row = outcome(plan, employee_id=1)
    assert (row["action"], row["changed_fields"]) == ("unchanged", None)


def test_already_terminated_and_still_inactive_is_unchanged() -> None:
    plan = plan_for(
        users(source_user("u1", "a@acme.de", active=False)),
        employees(employee(1, "a@acme.de", link="u1", status="terminated")),
    )
    assert outcome(plan, employee_id=1)["action"] == "unchanged"


# Rule 5
def test_employee_matching_no_source_user_is_flagged_non_matching_not_removed() -> None:
    plan = plan_for(users(), employees(employee(1, "a@acme.de", link="u1", status="synced"), employee(2, "b@x.de")))
    for employee_id in (1, 2):
        row = outcome(plan, employee_id=employee_id)
        assert (row["action"], row["new_status"]) == ("non_matching", "non_matching")
        assert row["new_email"] == row["old_email"]


def test_terminated_employee_deleted_in_the_source_becomes_non_matching() -> None:
    plan = plan_for(users(), employees(employee(1, "a@acme.de", link="u1", status="terminated")))
    assert outcome(plan, employee_id=1)["action"] == "non_matching"


def test_non_matching_employee_still_unmatched_is_not_flagged_again() -> None:
    plan = plan_for(users(), employees(employee(1, "a@acme.de", link="u1", status="non_matching")))
    assert outcome(plan, employee_id=1)["action"] == "still_non_matching"


def test_employee_whose_source_user_is_quarantined_is_kept_as_it_is() -> None:
    # why: a record the source still lists (with a broken email) is no evidence the person left.
    plan = plan_for(users(), employees(employee(1, "a@acme.de", link="u1", status="synced")), held=["u1"])
    row = outcome(plan, employee_id=1)
    assert row["action"] == "kept"
    assert row["new_status"] == "synced"


# Rule 6
def test_two_source_users_with_one_email_are_conflicts_and_the_holder_keeps_its_state() -> None:
    plan = plan_for(
        users(source_user("u1", "a@acme.de", first_name="X"), source_user("u2", "A@acme.de")),
        employees(employee(1, "a@acme.de", link="u1", status="synced")),
    )
    assert outcome(plan, employee_id=1)["action"] == "kept"
    assert outcome(plan, employee_id=1)["new_first_name"] == "Anna"
    conflicts = plan.filter(pl.col("action") == "conflict")
    assert sorted(conflicts.get_column("source_user_id").to_list()) == ["u1", "u2"]
    assert set(conflicts.get_column("reason").to_list()) == {"another source user has the same email"}


def test_email_change_onto_another_employees_email_is_a_conflict_and_not_applied() -> None:
    plan = plan_for(
        users(source_user("u1", "b@acme.de", first_name="Changed"), source_user("u2", "b2@acme.de")),
        employees(
            employee(1, "a@acme.de", link="u1", status="synced"),
            employee(2, "b@acme.de", link="u3", status="synced"),  # u3 left the source: flagged, keeps b@
        ),
    )
    row = outcome(plan, employee_id=1)
    assert row["action"] == "conflict"
    assert (row["new_email"], row["new_first_name"], row["new_status"]) == ("a@acme.de", "Anna", "synced")
    assert row["source_user_id"] == "u1"
    assert outcome(plan, employee_id=2)["action"] == "non_matching"
    assert outcome(plan, user_id="u2")["action"] == "created"


def test_email_change_onto_an_email_its_holder_leaves_in_the_same_run_is_applied() -> None:
    # why: judged against the emails after the run, so that a second run on the same source has
    # nothing left to apply (idempotence); the load parks moving rows, so chains and swaps both work.
    plan = plan_for(
        users(source_user("u1", "b@acme.de"), source_user("u2", "c@acme.de"), source_user("u3", "a@acme.de")),
        employees(
            employee(1, "a@acme.de", link="u1", status="synced"),
            employee(2, "b@acme.de", link="u2", status="synced"),
        ),
    )
    assert (outcome(plan, employee_id=1)["action"], outcome(plan, employee_id=1)["new_email"]) == (
        "updated",
        "b@acme.de",
    )
    assert (outcome(plan, employee_id=2)["action"], outcome(plan, employee_id=2)["new_email"]) == (
        "updated",
        "c@acme.de",
    )
    assert outcome(plan, user_id="u3")["action"] == "created"  # takes over the address u1 left


def test_every_employee_and_every_in_scope_source_user_gets_exactly_one_action() -> None:
    src = users(
        source_user("u1", "a@acme.de"),
        source_user("u2", "b@acme.de", active=False),
        source_user("u3", "c@acme.de"),
        source_user("u4", "d@acme.de"),
    )
    emp = employees(
        employee(1, "a@acme.de", link="u1", status="synced"),
        employee(2, "B@acme.de"),
        employee(3, "x@acme.de", link="gone", status="synced"),
    )
    plan = plan_for(src, emp)
    assert sorted(plan.get_column("employee_id").drop_nulls().to_list()) == [1, 2, 3]
    assert set(plan.get_column("action").to_list()) <= set(ACTIONS)
    assert sorted(plan.get_column("source_user_id").drop_nulls().to_list()) == ["gone", "u1", "u2", "u3", "u4"]
    assert dict(plan.group_by("action").len().iter_rows()) == {
        "unchanged": 1,
        "terminated": 1,  # linked by email to an inactive source user: flagged by this run, the link written
        "non_matching": 1,
        "created": 2,
    }


# ---- why flagged ------------------------------------------------------------------------------------------


def test_every_flag_carries_its_reason_from_the_link_against_what_the_source_listed() -> None:
    from datetime import UTC, datetime

    from tasks.match import (
        DISABLED,
        ENDED,
        GONE,
        MOVED_OUT,
        NEVER_MATCHED,
        ended_user_ids,
        with_end_dates,
        with_flag_reasons,
    )
    from tasks.report import flags_by_reason

    listed = users(
        source_user("u-stays", "stays@acme.example"),
        source_user("u-moved", "moved@acme.example"),  # listed, but outside the selected groups
        source_user("u-off", "off@acme.example", active=False),
        source_user("u-ended", "ended@acme.example"),  # active, but its end date has passed
        source_user("u-leaving", "leaving@acme.example"),  # active, its end date ahead
    ).with_columns(
        terminated_at=pl.col("user_id").replace_strict(
            {"u-ended": datetime(2026, 1, 31, tzinfo=UTC), "u-leaving": datetime(2027, 1, 31, tzinfo=UTC)},
            default=None,
            return_dtype=pl.Datetime("us", "UTC"),
        )
    )
    now = datetime(2026, 6, 1, tzinfo=UTC)
    in_scope = with_end_dates(listed.filter(pl.col("user_id") != "u-moved"), now)
    tenant = employees(
        employee(1, "stays@acme.example", link="u-stays", status="synced"),
        employee(2, "moved@acme.example", link="u-moved", status="synced"),
        employee(3, "left@acme.example", link="u-left", status="synced"),  # no longer listed at all
        employee(4, "typed-by-hand@acme.example"),  # never linked, no source user has its email
        employee(5, "off@acme.example", link="u-off", status="synced"),
        employee(6, "old@acme.example", status="non_matching"),  # flagged by an earlier run: not again
        employee(7, "ended@acme.example", link="u-ended", status="synced"),
        employee(8, "leaving@acme.example", link="u-leaving", status="synced"),
    )
    ended = ended_user_ids(in_scope, now)
    plan = with_flag_reasons(match(in_scope, tenant), listed["user_id"], in_scope["user_id"], ended)
    why = {row["employee_id"]: (row["action"], row["reason"]) for row in plan.iter_rows(named=True)}
    assert why[1] == ("unchanged", None)
    assert why[2] == ("non_matching", MOVED_OUT)
    assert why[3] == ("non_matching", GONE)
    assert why[4] == ("non_matching", NEVER_MATCHED)
    assert why[5] == ("terminated", DISABLED)
    assert why[6] == ("still_non_matching", None)  # its reason is the one its flagging run recorded
    assert why[7] == ("terminated", ENDED)
    assert why[8] == ("updated", None)  # only its planned leave date is new
    assert plan.filter(pl.col("employee_id") == 8)["new_leave_date"].to_list() == ["2027-01-31"]
    validate_plan(plan)
    counted = dict(flags_by_reason(plan).iter_rows())  # the run's summary artifact counts them by reason
    assert counted == {GONE: 1, MOVED_OUT: 1, NEVER_MATCHED: 1, DISABLED: 1, ENDED: 1}
