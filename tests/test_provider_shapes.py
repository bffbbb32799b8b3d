"""Every shape a provider's data arrives in through Unified.to (design.md, "Providers as they arrive"), read by
the product: groups only embedded in employees' `groups[]`, listed and embedded under two names, group types,
a group endpoint that is not supported (501), end dates (`terminated_at`), and a source stating no membership
at all. Through the pipeline's own stages on SQLite and Postgres, and through the flow over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from pipeline import Selection
from simulator.faults import Fault
from sources.model import GROUPS_EMBEDDED_ONLY, GROUPS_LISTED
from sources.normalize import UNREADABLE_END_DATE, normalize
from store.repo import add_tenant, list_employees, stored_groups
from tasks.match import DISABLED, ENDED
from tasks.validate import NO_MEMBERSHIPS
from tests.runs import sync_snapshot
from tests.tables import last_run, table
from tests.upstreams import Upstream, setup_tenant, sync
from tests.wire import dataset, person

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def member(user_id: str, email: str, *groups: tuple[str, str, str], **extra: Any) -> dict[str, Any]:
    """A Personio-like employee: its departments and teams only in its own `groups[]` (id, name, type)."""
    return person(user_id, email, groups=[{"id": g, "name": n, "type": t} for g, n, t in groups], **extra)


SALES = ("1001", "Sales", "DEPARTMENT")
TEAM_A = ("2001", "Team A", "TEAM")
OFFICE = ("3001", "Berlin", "BRANCH")


def by_email(engine: Engine) -> dict[str, dict[str, Any]]:
    return {e["email"]: e for e in list_employees(engine, "acme")}


# ---- the group list -----------------------------------------------------------------------------


def test_groups_only_embedded_in_employees_make_the_group_list_with_names_and_types() -> None:
    snapshot = normalize(
        [member("83752", "a@acme.example", SALES, TEAM_A), member("83753", "b@acme.example", SALES, OFFICE)], []
    )
    assert sorted(snapshot.groups.select("group_id", "name", "type", "parent_id").rows()) == [
        ("1001", "Sales", "DEPARTMENT", None),
        ("2001", "Team A", "TEAM", None),
        ("3001", "Berlin", "BRANCH", None),
    ]
    assert sorted(snapshot.memberships.rows()) == [
        ("1001", "83752"),
        ("1001", "83753"),
        ("2001", "83752"),
        ("3001", "83753"),
    ]


def test_a_group_listed_and_embedded_is_one_group_and_the_listed_name_wins() -> None:
    listed = [{"id": "1001", "name": "Sales (listed)", "user_ids": ["u1"]}]  # why: the listing names no type
    employees = [
        member("u1", "a@acme.example", ("1001", "Sales DACH", "department")),
        member("u2", "b@acme.example", ("1001", "Sales", "DEPARTMENT")),
    ]
    snapshot = normalize(employees, listed)
    assert snapshot.groups.select("group_id", "name", "type").rows() == [("1001", "Sales (listed)", "DEPARTMENT")]
    assert sorted(snapshot.memberships.rows()) == [("1001", "u1"), ("1001", "u2")]


def test_a_group_id_embedded_under_two_names_keeps_the_first_and_is_listed_once() -> None:
    employees = [
        member("u1", "a@acme.example", ("1001", "Sales", "DEPARTMENT")),
        member("u2", "b@acme.example", ("1001", "Sales DACH", "DEPARTMENT")),
    ]
    assert normalize(employees, []).groups.select("group_id", "name").rows() == [("1001", "Sales")]


def test_group_types_are_kept_as_unified_spells_them_and_stored_for_the_filter(engine: Engine) -> None:
    add_tenant(engine, "acme")
    snapshot = normalize([member("u1", "a@acme.example", ("1001", "Sales", " department "), TEAM_A)], [])
    sync_snapshot(engine, "acme", snapshot, selection=Selection(group_ids=("1001",)), now=NOW)
    assert {g["group_id"]: (g["name"], g["type"]) for g in stored_groups(engine, "acme")} == {
        "1001": ("Sales", "DEPARTMENT"),
        "2001": ("Team A", "TEAM"),
    }


def test_a_department_named_only_in_employees_can_be_selected_and_synced(engine: Engine) -> None:
    add_tenant(engine, "acme")
    source = [
        member("83752", "a@acme.example", SALES, TEAM_A),
        member("83753", "b@acme.example", SALES),
        member("83754", "c@acme.example", OFFICE),  # why: outside the selection
    ]
    _, planned = sync_snapshot(engine, "acme", normalize(source, []), selection=Selection(group_ids=("1001",)))
    assert planned.counts["created"] == 2 and planned.counts["filtered_out"] == 1
    assert {e: row["link"] for e, row in by_email(engine).items()} == {
        "a@acme.example": "83752",
        "b@acme.example": "83753",
    }


# ---- end dates ----------------------------------------------------------------------------------


def test_an_end_date_reached_terminates_with_its_own_reason_and_one_ahead_is_the_planned_leave_date(
    engine: Engine,
) -> None:
    add_tenant(engine, "acme")
    emails = ("left@acme.example", "leaving@acme.example", "disabled@acme.example", "stays@acme.example")
    sync_snapshot(engine, "acme", normalize([person(str(i), e) for i, e in enumerate(emails, 1)], []), now=NOW)
    source = [
        # why: Personio's leavers can still say ACTIVE until the day; the end date decides
        person("1", "left@acme.example", terminated_at="2026-05-31T00:00:00Z"),
        person("2", "leaving@acme.example", terminated_at="2026-09-30"),
        person("3", "disabled@acme.example", active=False),
        person("4", "stays@acme.example"),
    ]
    _, planned = sync_snapshot(engine, "acme", normalize(source, []), now=NOW)
    rows = by_email(engine)
    assert (rows["left@acme.example"]["status"], rows["left@acme.example"]["reason"]) == ("terminated", ENDED)
    assert rows["left@acme.example"]["leave_date"] == "2026-05-31"
    assert (rows["disabled@acme.example"]["status"], rows["disabled@acme.example"]["reason"]) == (
        "terminated",
        DISABLED,
    )
    assert (rows["leaving@acme.example"]["status"], rows["leaving@acme.example"]["leave_date"]) == (
        "synced",
        "2026-09-30",
    )
    assert rows["stays@acme.example"]["leave_date"] is None
    assert (planned.counts["flagged_ended"], planned.counts["flagged_disabled"]) == (1, 1)

    # The day passes: the planned leave date is reached, with nothing else changed in the source.
    _, later = sync_snapshot(engine, "acme", normalize(source, []), now=datetime(2026, 10, 1, tzinfo=UTC))
    assert by_email(engine)["leaving@acme.example"]["status"] == "terminated"
    assert by_email(engine)["leaving@acme.example"]["reason"] == ENDED
    assert later.counts["terminated"] == 1

    # The end date is withdrawn (the leaver stays after all): back to synced, the date gone.
    back = [person("2", "leaving@acme.example"), *source[2:]]
    sync_snapshot(engine, "acme", normalize([source[0], *back], []), now=datetime(2026, 10, 2, tzinfo=UTC))
    row = by_email(engine)["leaving@acme.example"]
    assert (row["status"], row["leave_date"]) == ("synced", None)


def test_a_planned_leave_date_that_moves_is_an_update_and_a_second_run_writes_nothing(engine: Engine) -> None:
    add_tenant(engine, "acme")
    first = [person("1", "a@acme.example", terminated_at="2026-09-30T00:00:00Z")]
    sync_snapshot(engine, "acme", normalize(first, []), now=NOW)
    moved = [person("1", "a@acme.example", terminated_at="2026-12-31T00:00:00+01:00")]
    _, planned = sync_snapshot(engine, "acme", normalize(moved, []), now=NOW)
    assert planned.counts["updated"] == 1
    assert by_email(engine)["a@acme.example"]["leave_date"] == "2026-12-30"  # the UTC date of that instant
    _, again = sync_snapshot(engine, "acme", normalize(moved, []), now=NOW)
    assert again.counts["updated"] == 0 and again.written == 0


def test_an_unreadable_end_date_quarantines_the_user_and_keeps_its_employee(engine: Engine) -> None:
    add_tenant(engine, "acme")
    others = [person(str(i), f"p{i}@acme.example") for i in range(2, 6)]
    sync_snapshot(engine, "acme", normalize([person("1", "a@acme.example"), *others], []), now=NOW)
    before = table(engine)
    garbled = person("1", "a@acme.example", terminated_at="soon")
    _, planned = sync_snapshot(engine, "acme", normalize([garbled, *others], []), now=NOW)
    assert planned.quarantine.get_column("reason").to_list() == [UNREADABLE_END_DATE]
    assert table(engine) == before


def test_an_employee_linked_by_email_to_a_leaver_is_flagged_with_its_reason_and_guarded(engine: Engine) -> None:
    from store.repo import add_employee
    from tasks.validate import Guard

    add_tenant(engine, "acme")
    emails = [f"p{i}@acme.example" for i in range(12)]
    for email in emails:  # why: unmanaged, as after a disconnect: the first sync links them by email
        add_employee(engine, "acme", email=email.upper(), first_name="A", last_name="B")
    leavers = [person(str(i), e, active=i % 2 == 0, terminated_at="2026-05-31") for i, e in enumerate(emails)]
    source = normalize(leavers, [])
    _, stopped = sync_snapshot(engine, "acme", source, now=NOW, guard=Guard())
    assert stopped.stop_reason is not None and "flag, deactivate or delete 12" in stopped.stop_reason
    _, planned = sync_snapshot(engine, "acme", source, now=NOW)  # the override
    assert (planned.counts["terminated"], planned.counts["linked"], planned.counts["flagged_ended"]) == (12, 0, 12)
    assert {(row["status"], row["reason"], row["link"] is not None) for row in by_email(engine).values()} == {
        ("terminated", ENDED, True)
    }


# ---- a source that states no membership -----------------------------------------------------------


def test_selected_groups_on_a_source_without_memberships_stop_the_run_with_one_sentence(engine: Engine) -> None:
    add_tenant(engine, "acme")  # why: even a first sync, with no employee to protect, says why nobody comes
    groups_without_members = [{"id": "g", "name": "G"}, {"id": "h", "name": "H"}]
    source = normalize([person("1", "a@acme.example"), person("2", "b@acme.example")], groups_without_members)
    from tasks.validate import Guard

    _, planned = sync_snapshot(engine, "acme", source, selection=Selection(group_ids=("g",)), guard=Guard())
    assert planned.stop_reason is not None and NO_MEMBERSHIPS in planned.stop_reason
    assert planned.written is None and list_employees(engine, "acme") == []
    _, everyone = sync_snapshot(engine, "acme", source, selection=Selection(all_users=True), guard=Guard())
    assert everyone.stop_reason is None and everyone.counts["created"] == 2


# ---- the group endpoint not supported (501), through the flow over HTTP -----------------------------


@pytest.mark.usefixtures("prefect_api")
def test_a_group_endpoint_answering_501_falls_back_to_the_embedded_groups(engine: Engine, upstream: Upstream) -> None:
    upstream.source.replace(
        dataset([member("83752", "a@acme.example", SALES), member("83753", "b@acme.example", OFFICE)], [])
    )
    upstream.faults.add(Fault(status=501, kind="group", sticky=True))
    setup_tenant(engine, upstream, ["1001"])

    result = sync(trigger="cli")
    assert result["outcome"] == "succeeded"
    assert result["counts"]["created"] == 1 and result["counts"]["filtered_out"] == 1
    assert "group" in upstream.requested_kinds()  # asked, refused, and the run went on
    assert {g["group_id"]: g["type"] for g in stored_groups(engine, "acme")} == {
        "1001": "DEPARTMENT",
        "3001": "BRANCH",
    }


@pytest.mark.usefixtures("prefect_api")
def test_all_users_never_needs_the_group_endpoint(engine: Engine, upstream: Upstream) -> None:
    from store.repo import select_groups

    upstream.source.replace(dataset([person("1", "a@acme.example"), person("2", "b@acme.example")], []))
    upstream.faults.add(Fault(status=501, kind="group", sticky=True))
    setup_tenant(engine, upstream, ["g"])
    select_groups(engine, "acme", [], all_users=True)
    result = sync(trigger="cli")
    assert result["outcome"] == "succeeded" and result["counts"]["created"] == 2
    assert last_run(engine).error is None


def test_the_extract_says_how_it_knew_the_groups() -> None:
    assert normalize([], []).group_source == GROUPS_LISTED
    assert normalize([], [], group_source=GROUPS_EMBEDDED_ONLY).group_source == GROUPS_EMBEDDED_ONLY


# ---- connecting: the provider as Unified.to states it ---------------------------------------------------


def test_connect_checks_the_integration_type_where_unified_says_it_and_personio_needs_no_group_permission() -> None:
    from admin.connect import ConnectError
    from admin.operations import check_connection
    from sources.unified import UnifiedConnection

    def connection(integration_type: str | None, *permissions: str) -> UnifiedConnection:
        return UnifiedConnection(id="c1", integration_type=integration_type, permissions=list(permissions))

    check_connection(connection("personio", "hris_employee_read"), tenant="acme", provider="personio")
    check_connection(connection(None, "hris_employee_read", "hris_group_read"), tenant="acme", provider="google")
    with pytest.raises(ConnectError, match="is a personio connection, not entra"):
        check_connection(connection("personio", "hris_employee_read"), tenant="acme", provider="entra")
    with pytest.raises(ConnectError, match="lacks the permission hris_group_read"):
        check_connection(connection("microsoftentraid", "hris_employee_read"), tenant="acme", provider="entra")
    with pytest.raises(ConnectError, match="lacks the permission hris_employee_read"):
        check_connection(connection("personio"), tenant="acme", provider="personio")
