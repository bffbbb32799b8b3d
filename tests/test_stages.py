"""The non-match stages (flatten, filter, validate, report) as plain functions on hand-written tables."""

from __future__ import annotations

import re
from fractions import Fraction

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sources.model import GROUP_SCHEMA, MEMBERSHIP_SCHEMA
from tasks.filter import filter_users
from tasks.flatten import flatten
from tasks.match import match
from tasks.report import COUNT_KEYS, artifact_key, count, summary_markdown, totals
from tasks.validate import (
    Guard,
    InvalidPlanError,
    MostlyInvalidError,
    check_guard,
    validate_plan,
    validate_source_users,
)
from tests.frames import employee, employees, source_user, users

NO_HELD = pl.Series([], dtype=pl.String())


def groups(*rows: tuple[str, str | None]) -> pl.DataFrame:
    """(group_id, parent_id) rows; the name is the id, upper-cased."""
    return pl.DataFrame(
        [{"group_id": g, "name": g.upper(), "parent_id": p} for g, p in rows],
        schema=GROUP_SCHEMA,
    )


def memberships(*rows: tuple[str, str | None]) -> pl.DataFrame:
    """Direct (group_id, user_id) memberships."""
    return pl.DataFrame([{"group_id": g, "user_id": u} for g, u in rows], schema=MEMBERSHIP_SCHEMA)


def members(flat_memberships: pl.DataFrame) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for group_id, user_id in flat_memberships.select("group_id", "user_id").iter_rows():
        result.setdefault(group_id, set()).add(user_id)
    return result


def member_counts(flat_groups: pl.DataFrame) -> dict[str, int]:
    return dict(flat_groups.select("group_id", "member_count").iter_rows())


def people(*ids: str) -> pl.DataFrame:
    return users(*[source_user(i, f"{i}@acme.de") for i in ids])


# ---- flatten ---------------------------------------------------------------------------------------


def test_member_of_a_child_group_is_a_member_of_every_ancestor() -> None:
    grp = groups(("company", None), ("sales", "company"), ("sales-emea", "sales"), ("sales-de", "sales-emea"))
    mem = memberships(("sales-de", "u1"), ("sales-emea", "u2"), ("company", "u3"))
    flat = flatten(grp, mem, people("u1", "u2", "u3"))
    assert members(flat.memberships) == {
        "sales-de": {"u1"},
        "sales-emea": {"u1", "u2"},
        "sales": {"u1", "u2"},
        "company": {"u1", "u2", "u3"},
    }


def test_flat_memberships_list_each_pair_once() -> None:
    # u1 reaches "company" both directly and through two children.
    grp = groups(("company", None), ("a", "company"), ("b", "company"))
    mem = memberships(("a", "u1"), ("b", "u1"), ("company", "u1"))
    flat = flatten(grp, mem, people("u1"))
    assert flat.memberships.filter(pl.col("group_id") == "company").height == 1
    assert not flat.memberships.is_duplicated().any()


def test_group_cycle_terminates_and_gives_every_member_to_every_group_in_it() -> None:
    # why: nested-group cycles exist in real directories; flattening must neither hang nor drop members.
    grp = groups(("a", "b"), ("b", "a"), ("child", "a"))
    mem = memberships(("a", "u1"), ("b", "u2"), ("child", "u3"))
    flat = flatten(grp, mem, people("u1", "u2", "u3"))
    assert members(flat.memberships) == {"a": {"u1", "u2", "u3"}, "b": {"u1", "u2", "u3"}, "child": {"u3"}}
    assert member_counts(flat.groups) == {"a": 3, "b": 3, "child": 1}


def test_longer_group_cycle_terminates_too() -> None:
    grp = groups(("a", "c"), ("b", "a"), ("c", "b"))
    mem = memberships(("a", "u1"), ("b", "u2"), ("c", "u3"))
    flat = flatten(grp, mem, people("u1", "u2", "u3"))
    assert members(flat.memberships) == {g: {"u1", "u2", "u3"} for g in ("a", "b", "c")}


def test_group_that_is_its_own_parent_terminates() -> None:
    grp = groups(("a", "a"), ("child", "a"))
    mem = memberships(("a", "u1"), ("child", "u2"))
    flat = flatten(grp, mem, people("u1", "u2"))
    assert members(flat.memberships) == {"a": {"u1", "u2"}, "child": {"u2"}}
    assert member_counts(flat.groups) == {"a": 2, "child": 1}


def test_parent_id_that_no_group_lists_is_tolerated() -> None:
    grp = groups(("orphan", "deleted-parent"), ("root", None))
    mem = memberships(("orphan", "u1"), ("root", "u2"))
    flat = flatten(grp, mem, people("u1", "u2"))
    assert members(flat.memberships)["orphan"] == {"u1"}
    assert member_counts(flat.groups) == {"orphan": 1, "root": 1}
    assert "deleted-parent" not in member_counts(flat.groups)  # the group list shows listed groups only


def test_user_in_two_child_groups_counts_once_in_the_parent() -> None:
    grp = groups(("parent", None), ("a", "parent"), ("b", "parent"))
    mem = memberships(("a", "u1"), ("b", "u1"), ("b", "u2"))
    flat = flatten(grp, mem, people("u1", "u2"))
    assert member_counts(flat.groups) == {"parent": 2, "a": 1, "b": 2}


def test_memberships_naming_unknown_users_do_not_count() -> None:
    # why: a group can still list a user the source no longer returns (or one without an id).
    grp = groups(("parent", None), ("child", "parent"))
    mem = memberships(("child", "u1"), ("child", "ghost"), ("parent", "ghost2"))
    flat = flatten(grp, mem, people("u1"))
    assert member_counts(flat.groups) == {"parent": 1, "child": 1}


def test_users_without_id_do_not_count_as_members() -> None:
    grp = groups(("g", None))
    mem = memberships(("g", "u1"))
    src = users(source_user("u1", "u1@acme.de"), source_user(None, "noid@acme.de"))
    assert member_counts(flatten(grp, mem, src).groups) == {"g": 1}


def test_group_without_members_has_count_zero() -> None:
    grp = groups(("empty", None), ("empty-child", "empty"), ("full", None))
    mem = memberships(("full", "u1"))
    flat = flatten(grp, mem, people("u1"))
    assert member_counts(flat.groups) == {"empty": 0, "empty-child": 0, "full": 1}
    assert flat.groups.get_column("member_count").dtype == pl.Int64()


def test_flat_group_list_has_every_group_once() -> None:
    grp = groups(("a", None), ("b", "a"), ("c", "b"), ("d", "c"), ("e", "e"), ("x", "y"), ("y", "x"))
    mem = memberships(("d", "u1"), ("e", "u2"), ("x", "u3"), ("a", "u4"))
    flat = flatten(grp, mem, people("u1", "u2", "u3", "u4"))
    listed = flat.groups.get_column("group_id").to_list()
    assert sorted(listed) == sorted(grp.get_column("group_id").to_list())
    assert flat.groups.select("group_id", "name", "parent_id", "type").sort("group_id").equals(grp.sort("group_id"))


# ---- filter ----------------------------------------------------------------------------------------


def test_only_members_of_a_selected_group_are_in_scope_directly_or_inherited() -> None:
    grp = groups(("company", None), ("sales", "company"), ("sales-de", "sales"), ("hr", "company"))
    mem = memberships(("sales", "u1"), ("sales-de", "u2"), ("hr", "u3"), ("company", "u4"))
    src = people("u1", "u2", "u3", "u4", "u5")
    flat = flatten(grp, mem, src)
    scope = filter_users(src, flat.memberships, flat.groups, selected_group_ids=["sales"], all_users=False)
    assert sorted(scope.users.get_column("user_id").to_list()) == ["u1", "u2"]
    assert scope.filtered_out == 3
    assert scope.missing_groups == []


def test_a_member_of_two_selected_groups_is_in_scope_once() -> None:
    grp = groups(("a", None), ("b", None))
    mem = memberships(("a", "u1"), ("b", "u1"), ("b", "u2"))
    src = people("u1", "u2", "u3")
    flat = flatten(grp, mem, src)
    scope = filter_users(src, flat.memberships, flat.groups, selected_group_ids=["a", "b"], all_users=False)
    assert sorted(scope.users.get_column("user_id").to_list()) == ["u1", "u2"]
    assert scope.filtered_out == 1


def test_filter_keeps_the_users_columns_unchanged() -> None:
    grp = groups(("a", None))
    mem = memberships(("a", "u1"))
    src = people("u1", "u2")
    scope = filter_users(src, mem, grp, selected_group_ids=["a"], all_users=False)
    assert scope.users.equals(src.filter(pl.col("user_id") == "u1"))


def test_all_users_keeps_everyone_whatever_the_groups() -> None:
    src = users(source_user("u1", "u1@acme.de"), source_user(None, "noid@acme.de"), source_user("u3", "u3@acme.de"))
    scope = filter_users(
        src, memberships(("a", "u1")), groups(("a", None)), selected_group_ids=["gone"], all_users=True
    )
    assert scope.users.equals(src)
    assert scope.filtered_out == 0


def test_selected_group_the_source_no_longer_lists_is_reported_missing() -> None:
    grp = groups(("a", None))
    mem = memberships(("a", "u1"))
    src = people("u1", "u2")
    scope = filter_users(src, mem, grp, selected_group_ids=["zz-deleted", "a", "b-deleted"], all_users=False)
    assert scope.missing_groups == ["b-deleted", "zz-deleted"]
    assert scope.users.get_column("user_id").to_list() == ["u1"]


def test_only_missing_groups_selected_puts_nobody_in_scope() -> None:
    src = people("u1")
    scope = filter_users(
        src, memberships(("a", "u1")), groups(("a", None)), selected_group_ids=["gone"], all_users=False
    )
    assert scope.users.is_empty()
    assert scope.filtered_out == 1
    assert scope.missing_groups == ["gone"]


def test_user_without_id_is_never_in_scope_unless_all_users() -> None:
    grp = groups(("a", None))
    mem = memberships(("a", "u1"), ("a", None))  # even a membership naming no id does not match it
    src = users(source_user("u1", "u1@acme.de"), source_user(None, "noid@acme.de"))
    scope = filter_users(src, mem, grp, selected_group_ids=["a"], all_users=False)
    assert scope.users.get_column("user_id").to_list() == ["u1"]
    assert scope.filtered_out == 1


# ---- validate: source users ---------------------------------------------------------------------------


def quarantine_reasons(src: pl.DataFrame) -> dict[int, str]:
    validated = validate_source_users(src)
    return dict(validated.quarantine.select("record", "reason").iter_rows())


def valid(n: int) -> list[dict[str, object]]:
    """Enough good rows that a few bad ones do not trip the mostly-invalid rule."""
    return [source_user(f"ok{i}", f"ok{i}@acme.de") for i in range(n)]


def test_source_user_without_id_is_quarantined_as_missing_id() -> None:
    src = users(source_user(None, "a@acme.de"), *valid(3))
    assert quarantine_reasons(src) == {0: "missing id"}


def test_source_user_with_empty_id_is_quarantined() -> None:
    src = users(source_user("", "a@acme.de"), *valid(3))
    assert quarantine_reasons(src) == {0: "empty id"}


def test_both_rows_of_a_duplicate_id_are_quarantined() -> None:
    src = users(source_user("u1", "a@acme.de"), source_user("u1", "b@acme.de"), *valid(3))
    validated = validate_source_users(src)
    assert dict(validated.quarantine.select("record", "reason").iter_rows()) == {0: "duplicate id", 1: "duplicate id"}
    assert validated.quarantine.get_column("source_user_id").to_list() == ["u1", "u1"]
    assert "u1" not in validated.users.get_column("user_id").to_list()


def test_source_user_without_usable_email_is_quarantined() -> None:
    src = users(source_user("u1", None), *valid(3))
    assert quarantine_reasons(src) == {0: "no usable email"}


@pytest.mark.parametrize(
    "email",
    ["anna muster@acme.de", "anna@@acme.de", "anna@acme", "@acme.de", "anna@", "anna.acme.de", " anna@acme.de"],
)
def test_malformed_email_is_quarantined(email: str) -> None:
    src = users(source_user("u1", email), *valid(3))
    assert quarantine_reasons(src) == {0: "email is not a valid address"}


def test_unicode_email_is_well_formed() -> None:
    src = users(source_user("u1", "jürgen.müller@bücher.de"), *valid(3))
    assert quarantine_reasons(src) == {}


def test_unknown_employment_status_is_quarantined() -> None:
    src = users(source_user("u1", "a@acme.de", employment_status="on_leave"), *valid(3))
    assert quarantine_reasons(src) == {0: "unknown employment_status"}


def test_problem_found_at_the_edge_is_the_quarantine_reason() -> None:
    src = users(source_user("u1", "a@acme.de", problem="name contains control characters"), *valid(3))
    assert quarantine_reasons(src) == {0: "name contains control characters"}


def test_every_reason_of_one_row_is_reported_joined() -> None:
    src = users(source_user(None, "not an email", employment_status="on_leave"), *valid(3))
    reasons = quarantine_reasons(src)[0].split("; ")
    assert sorted(reasons) == ["email is not a valid address", "missing id", "unknown employment_status"]


def test_held_user_ids_are_the_ids_of_quarantined_users() -> None:
    src = users(
        source_user("u1", None),
        source_user(None, "noid@acme.de"),
        source_user("u2", "x", employment_status="gone"),
        *valid(4),
    )
    validated = validate_source_users(src)
    assert validated.held_user_ids is not None
    assert sorted(validated.held_user_ids.to_list()) == ["u1", "u2"]  # a row without id holds nobody


def test_usable_rows_pass_through_unchanged() -> None:
    good = valid(4)
    src = users(source_user("u1", None), *good)
    validated = validate_source_users(src)
    assert validated.users.equals(src.filter(pl.col("record") >= 1))
    assert validated.users.schema == src.schema


def test_clean_input_quarantines_nothing() -> None:
    src = users(*valid(5))
    validated = validate_source_users(src)
    assert validated.quarantine.is_empty()
    assert validated.held_user_ids.is_empty()
    assert validated.users.equals(src)


def test_quarantine_names_no_email_or_name() -> None:
    src = users(source_user("u1", "bad address@acme.de", first_name="Zoë", last_name="Secret"), *valid(3))
    quarantine = validate_source_users(src).quarantine
    assert set(quarantine.columns) == {"record", "source_user_id", "reason"}
    text = str(quarantine.to_dicts())
    assert "bad address" not in text and "Zoë" not in text and "Secret" not in text


def test_more_than_half_invalid_fails_the_run() -> None:
    src = users(source_user(None, "a@acme.de"), source_user("u2", None), source_user("u3", "u3@acme.de"))
    with pytest.raises(MostlyInvalidError):
        validate_source_users(src)


def test_exactly_half_invalid_still_goes_on() -> None:
    src = users(source_user(None, "a@acme.de"), source_user("u2", None), *valid(2))
    validated = validate_source_users(src)
    assert validated.quarantine.height == 2
    assert validated.users.height == 2


def test_empty_input_is_not_mostly_invalid() -> None:
    validated = validate_source_users(users())
    assert validated.users.is_empty() and validated.quarantine.is_empty()


# ---- validate: the plan --------------------------------------------------------------------------------


def valid_plan() -> pl.DataFrame:
    return match(
        users(source_user("u1", "a@acme.de"), source_user("u2", "b@acme.de")),
        employees(employee(1, "a@acme.de", link="u1", status="synced")),
        NO_HELD,
    )


def test_plan_from_match_passes_validation() -> None:
    plan = valid_plan()
    assert validate_plan(plan).equals(plan)


def test_plan_where_two_employees_end_with_the_same_email_is_rejected() -> None:
    plan = valid_plan().with_columns(
        new_email=pl.lit("a@acme.de"), new_email_norm=pl.lit("a@acme.de")
    )  # the created u2 would take employee 1's address
    with pytest.raises(InvalidPlanError, match="same email"):
        validate_plan(plan)


def test_plan_where_two_employees_end_with_the_same_link_is_rejected() -> None:
    plan = valid_plan().with_columns(source_user_id=pl.lit("u1"))
    with pytest.raises(InvalidPlanError, match="same link"):
        validate_plan(plan)


@pytest.mark.parametrize("column", ["source_user_id", "new_email", "new_email_norm"])
def test_incomplete_created_row_is_rejected(column: str) -> None:
    plan = valid_plan().with_columns(
        pl.when(pl.col("action") == "created").then(None).otherwise(pl.col(column)).alias(column)
    )
    with pytest.raises(InvalidPlanError, match="created rows are complete"):
        validate_plan(plan)


def test_created_row_that_is_not_synced_is_rejected() -> None:
    plan = valid_plan().with_columns(
        new_status=pl.when(pl.col("action") == "created").then(pl.lit("terminated")).otherwise(pl.col("new_status"))
    )
    with pytest.raises(InvalidPlanError):
        validate_plan(plan)


def test_plan_with_an_unknown_action_is_rejected() -> None:
    with pytest.raises(InvalidPlanError):
        validate_plan(valid_plan().with_columns(action=pl.lit("deleted")))


# ---- validate: the mass-change guard --------------------------------------------------------------------


def guard_plan(
    *, synced: int, leaving: int, terminated: int = 0, unmanaged: int = 0, non_matching: int = 0
) -> pl.DataFrame:
    """`synced` linked, synced employees: `leaving` of them gone from the source, `terminated` disabled in it.

    Plus `unmanaged` and `non_matching` employees the source does not list either.
    """
    emp = [employee(i, f"s{i}@acme.de", link=f"u{i}", status="synced") for i in range(synced)]
    emp += [employee(1000 + i, f"m{i}@acme.de") for i in range(unmanaged)]
    emp += [employee(2000 + i, f"n{i}@acme.de", link=f"n{i}", status="non_matching") for i in range(non_matching)]
    src = [source_user(f"u{i}", f"s{i}@acme.de", active=i >= leaving + terminated) for i in range(leaving, synced)]
    plan = match(users(*src), employees(*emp), NO_HELD)
    flagged = plan.filter((pl.col("old_status") == "synced") & pl.col("action").is_in(["non_matching", "terminated"]))
    assert flagged.height == leaving + terminated  # the fixture says what it builds
    return plan


def stops(plan: pl.DataFrame, *, in_scope: int = 1, guard: Guard | None = None, override: bool = False) -> bool:
    return check_guard(plan, in_scope=in_scope, guard=guard or Guard(), override=override) is not None


def test_guard_stops_a_run_flagging_more_than_ten_percent_and_at_least_ten_synced_employees() -> None:
    reason = check_guard(guard_plan(synced=100, leaving=11), in_scope=89, guard=Guard(), override=False)
    assert reason is not None
    assert "11 employees of 100" in reason


def test_guard_lets_exactly_ten_percent_pass() -> None:
    assert not stops(guard_plan(synced=100, leaving=10))
    assert stops(guard_plan(synced=100, leaving=11))


def test_guard_lets_fewer_than_ten_pass_whatever_the_share() -> None:
    assert not stops(guard_plan(synced=20, leaving=9))
    assert stops(guard_plan(synced=20, leaving=10))


def test_guard_counts_employees_newly_terminated_in_the_source() -> None:
    assert stops(guard_plan(synced=50, leaving=5, terminated=6))
    assert not stops(guard_plan(synced=50, leaving=4, terminated=5))


def test_guard_always_stops_an_empty_source_while_the_tenant_has_synced_employees() -> None:
    # why: keycloak#24669 — an empty answer from the source is not "everyone left".
    plan = guard_plan(synced=3, leaving=3)
    reason = check_guard(plan, in_scope=0, guard=Guard(), override=False)
    assert reason is not None and "no users in scope" in reason and "3 employees not flagged before" in reason
    assert stops(guard_plan(synced=1, leaving=1), in_scope=0)


def test_no_valid_users_in_scope_stops_while_any_employee_is_not_flagged_yet() -> None:
    # why: after a disconnect every employee is unmanaged; a reconnect to a source whose scope is empty
    # (a group listing answering [], a lone junk record) would flag them all, below min_count too.
    assert stops(guard_plan(synced=0, leaving=0, unmanaged=3), in_scope=0)
    assert not stops(guard_plan(synced=0, leaving=0, unmanaged=3), in_scope=1)  # then the share rule decides


def test_empty_scope_with_no_employee_left_to_flag_is_not_stopped() -> None:
    assert not stops(guard_plan(synced=0, leaving=0), in_scope=0)  # a new tenant
    assert not stops(guard_plan(synced=0, leaving=0, non_matching=3), in_scope=0)  # only old flags, kept


def test_empty_scope_stops_a_run_that_would_still_delete_old_flags() -> None:
    # why: the delete policy's due deletions must not ride on a read that found nobody in scope.
    plan = pl.DataFrame(
        {
            "employee_id": [1, 2],
            "old_status": ["non_matching", "non_matching"],
            "action": ["deleted", "unchanged"],
            "old_deactivated": [True, True],
            "new_deactivated": [None, True],
        }
    )
    assert stops(plan, in_scope=0)
    assert not stops(plan, in_scope=1)  # one deletion: under the share rule's min_count


def test_all_selected_groups_gone_stops_the_run_and_names_them() -> None:
    plan = guard_plan(synced=0, leaving=0)  # even with no employee at all: the selection means nothing now
    reason = check_guard(
        plan, in_scope=0, guard=Guard(), override=False, selected_groups=["g2", "g1"], missing_groups=["g1", "g2"]
    )
    assert reason is not None and "none of the selected groups" in reason and "(missing: g1, g2)" in reason
    some_gone = check_guard(
        plan, in_scope=5, guard=Guard(), override=False, selected_groups=["g1", "g2"], missing_groups=["g1"]
    )
    assert some_gone is None  # one of two gone: the run goes on; its summary names the missing group
    overridden = check_guard(
        plan, in_scope=0, guard=Guard(), override=True, selected_groups=["g1"], missing_groups=["g1"]
    )
    assert overridden is None


def test_override_lets_a_stopped_run_proceed() -> None:
    assert check_guard(guard_plan(synced=20, leaving=20), in_scope=0, guard=Guard(), override=True) is None
    assert check_guard(guard_plan(synced=100, leaving=50), in_scope=50, guard=Guard(), override=True) is None


def test_unmanaged_employees_flagged_count_toward_the_guard() -> None:
    # why: after a disconnect every employee is unmanaged; a reconnect to a broken source must not flag them all.
    assert stops(guard_plan(synced=40, leaving=2, unmanaged=12))  # 14 of 52
    assert stops(guard_plan(synced=0, leaving=0, unmanaged=500))
    assert not stops(guard_plan(synced=120, leaving=2, unmanaged=8))  # 10 of 128


def test_employees_flagged_before_the_run_neither_count_nor_dilute() -> None:
    # 12 already non_matching employees stay unmatched, but only 2 of 40 synced ones leave.
    assert not stops(guard_plan(synced=40, leaving=2, non_matching=12))
    # ...and 200 old flags do not dilute the share: 10 of 40 is 25%.
    assert stops(guard_plan(synced=40, leaving=10, non_matching=200))


def test_guard_thresholds_are_settings() -> None:
    plan = guard_plan(synced=20, leaving=3)
    assert not stops(plan)
    assert stops(plan, guard=Guard(max_share=0.1, min_count=3))
    assert not stops(plan, guard=Guard(max_share=0.15, min_count=3))  # 3 of 20 is exactly 15%


@given(
    synced=st.integers(min_value=0, max_value=400),
    data=st.data(),
    share=st.sampled_from(["0.05", "0.1", "0.15", "0.2", "0.3", "0.5"]),
    min_count=st.integers(min_value=1, max_value=30),
)
def test_guard_stops_exactly_when_both_thresholds_are_exceeded(
    synced: int, data: st.DataObject, share: str, min_count: int
) -> None:
    flagged = data.draw(st.integers(min_value=0, max_value=synced))
    plan = pl.DataFrame(
        {
            "employee_id": range(synced),
            "old_status": ["synced"] * synced,
            "action": ["non_matching"] * flagged + ["unchanged"] * (synced - flagged),
            "old_deactivated": [False] * synced,
            "new_deactivated": [False] * synced,
        }
    )
    stopped = stops(plan, in_scope=synced, guard=Guard(max_share=float(share), min_count=min_count))
    assert stopped == (flagged >= min_count and Fraction(flagged) > Fraction(share) * synced)


# ---- report ----------------------------------------------------------------------------------------------


def mixed_plan() -> pl.DataFrame:
    src = users(
        source_user("u1", "a@acme.de"),  # unchanged
        source_user("u2", "b@acme.de", first_name="Berta"),  # updated
        source_user("u3", "c@acme.de", active=False),  # terminated
        source_user("u4", "d@acme.de"),  # reactivated
        source_user("u5", "manual@acme.de"),  # linked
        source_user("u6", "new1@acme.de"),  # created
        source_user("u7", "new2@acme.de"),  # created
        source_user("u8", "gone@acme.de", active=False),  # skipped_inactive
        source_user("u9", "twin@acme.de"),  # conflict (same email as u10)
        source_user("u10", "TWIN@acme.de"),  # conflict
    )
    emp = employees(
        employee(1, "a@acme.de", link="u1", status="synced"),
        employee(2, "b@acme.de", link="u2", status="synced"),
        employee(3, "c@acme.de", link="u3", status="synced"),
        employee(4, "d@acme.de", link="u4", status="terminated"),
        employee(5, "Manual@acme.de"),
        employee(6, "left@acme.de", link="u0", status="synced"),  # non_matching
        employee(7, "old@acme.de", link="uX", status="non_matching"),  # still_non_matching
    )
    return validate_plan(match(src, emp, NO_HELD))


def test_mixed_plan_gives_each_case_the_outcome_it_was_built_for() -> None:
    # The base of the count tests below: one (employee id, source user id, action) per case, as built.
    assert sorted(mixed_plan().select("employee_id", "source_user_id", "action").iter_rows(), key=repr) == sorted(
        [
            (1, "u1", "unchanged"),
            (2, "u2", "updated"),
            (3, "u3", "terminated"),
            (4, "u4", "reactivated"),
            (5, "u5", "linked"),
            (None, "u6", "created"),
            (None, "u7", "created"),
            (6, "u0", "non_matching"),
            (7, "uX", "still_non_matching"),
            (None, "u8", "skipped_inactive"),
            (None, "u9", "conflict"),
            (None, "u10", "conflict"),
        ],
        key=repr,
    )


def test_counts_say_how_many_employees_and_source_users_had_each_outcome() -> None:
    # 15 fetched: the 10 source users of mixed_plan(), 2 outside the selected groups, 3 invalid.
    counts = count(mixed_plan(), fetched=15, filtered_out=2, invalid=3)
    assert counts == {
        "fetched": 15,
        "created": 2,  # u6, u7
        "linked": 1,  # u5 to the hand-made employee 5
        "updated": 1,  # u2's new first name
        "unchanged": 1,  # u1
        "non_matching": 1,  # employee 6; employee 7 was flagged by an earlier run and is not counted again
        "terminated": 1,  # u3
        "reactivated": 1,  # u4
        "deactivated": 0,  # the policy is flag
        "deleted": 0,
        "joined": 0,  # no groups in this plan
        "left": 0,
        "skipped_inactive": 1,  # u8, inactive and never an employee
        "filtered_out": 2,
        "suppressed": 0,  # the tenant suppresses nobody
        "invalid": 3,
        "conflicts": 2,  # u9 and u10, one email between them
        **{key: 0 for key in COUNT_KEYS if key.startswith("flagged_")},  # no reasons given: match alone
    }
    assert list(counts) == COUNT_KEYS  # the order the artifact's table shows


def test_counts_of_an_empty_plan_are_zero() -> None:
    plan = match(users(), employees(), NO_HELD)
    counts = count(plan, fetched=0, filtered_out=0, invalid=0)
    assert set(counts.values()) == {0}
    assert list(counts) == COUNT_KEYS


def test_totals_are_the_employees_per_status_after_the_plan() -> None:
    # 7 employees + 2 created; conflicting and skipped source users are no employees.
    assert totals(mixed_plan()) == {"non_matching": 2, "synced": 6, "terminated": 1}


@pytest.mark.parametrize(
    "tenant",
    ["ACME", "Acme GmbH & Co. KG", "müller_ag/zürich", "  ", "---", "日本", "a" * 3 + "--b", "tenant.42", "İstanbul"],
)
def test_artifact_key_uses_lowercase_letters_digits_and_dashes_only(tenant: str) -> None:
    key = artifact_key(tenant)
    assert re.fullmatch(r"[a-z0-9-]+", key), key
    assert key.startswith("sync-")
    assert artifact_key(tenant) == key  # stable per tenant


def test_artifact_key_keeps_a_plain_tenant_id_readable() -> None:
    assert artifact_key("acme-42") == "sync-acme-42"
    assert artifact_key("Acme GmbH") == "sync-acme-gmbh"


def test_summary_lists_quarantined_and_conflicting_source_users_by_id_and_reason_only() -> None:
    src = users(
        source_user("u1", "zoe.secret@acme.de", first_name="Zoë", last_name="Geheimnis"),
        source_user("u2", "ZOE.secret@acme.de", first_name="Zacharias", last_name="Verborgen"),
        source_user("u3", "bad address@acme.de", first_name="Quentin", last_name="Quarantäne"),
        source_user(None, "no.id@acme.de", first_name="Ohne", last_name="Kennung"),
        source_user("u5", "fine@acme.de", first_name="Fridolin", last_name="Feinmann"),
        source_user("u6", "moves@acme.de", first_name="Umzug", last_name="Wandersmann"),
        source_user("u7", "third@acme.de", first_name="Theodora", last_name="Drittel"),
    )
    emp = employees(
        employee(1, "held@acme.de", link="u6", status="synced", first_name="Heidi", last_name="Halter"),
        employee(2, "moves@acme.de", link="u9", status="synced", first_name="Max", last_name="Besetzt"),
    )
    validated = validate_source_users(src)
    plan = validate_plan(match(validated.users, emp, validated.held_user_ids))
    counts = count(plan, fetched=src.height, filtered_out=0, invalid=validated.quarantine.height)
    markdown = summary_markdown(
        tenant="acme", outcome="succeeded", counts=counts, quarantine=validated.quarantine, plan=plan, missing_groups=[]
    )
    assert "| u3 | 2 | email is not a valid address |" in markdown
    assert "| (none) | 3 | missing id |" in markdown
    assert "| u1 |  | another source user has the same email |" in markdown
    assert "| u2 |  | another source user has the same email |" in markdown
    assert "| u6 | 1 | new email already belongs to another employee |" in markdown
    values = [v for row in src.iter_rows(named=True) for k, v in row.items() if k != "record" and k != "user_id"]
    values += [v for row in emp.iter_rows(named=True) for v in row.values() if isinstance(v, str) and "@" in v]
    values += ["Heidi", "Halter", "Besetzt"]
    for value in values:
        if isinstance(value, str) and value not in ("active", "inactive"):
            assert value.lower() not in markdown.lower(), value
    assert "@" not in markdown


def test_summary_names_missing_groups_and_cuts_long_lists() -> None:
    quarantine = pl.DataFrame(
        {"record": list(range(5)), "source_user_id": [f"u{i}" for i in range(5)], "reason": ["missing id"] * 5},
        schema={"record": pl.Int64(), "source_user_id": pl.String(), "reason": pl.String()},
    )
    plan = match(users(), employees(), NO_HELD)
    counts = count(plan, fetched=5, filtered_out=0, invalid=5)
    markdown = summary_markdown(
        tenant="acme",
        outcome="succeeded",
        counts=counts,
        quarantine=quarantine,
        plan=plan,
        missing_groups=["g-gone"],
        limit=3,
    )
    assert "g-gone" in markdown
    assert "| u2 |" in markdown and "| u3 |" not in markdown
    assert "2 more" in markdown
