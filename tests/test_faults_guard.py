"""A run stopped by the mass-change guard changes nothing, and its summary lists what it would have flagged."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import Engine, select

from pipeline import Selection
from sources.normalize import normalize
from store.models import Employee
from store.repo import add_tenant
from tasks.report import summary_markdown
from tasks.validate import Guard
from tests.runs import sync_snapshot
from tests.tables import last_run, table
from tests.upstreams import Upstream, in_one_group, setup_tenant, staff, sync
from tests.wire import dataset, group, person


def test_summary_of_a_stopped_run_lists_would_be_flags_by_ids_only() -> None:
    plan = pl.DataFrame(
        {
            "employee_id": [7, 8, 9, 10, 11],
            "source_user_id": ["u7", "u8", "u9", "u10", "u11"],
            "action": ["non_matching", "terminated", "unchanged", "deleted", "deactivated"],
            "new_status": ["non_matching", "terminated", "synced", None, "non_matching"],
            "reason": [None, None, None, "deleted by the deprovisioning policy", None],
            "new_email": ["a@x.example", "b@x.example", "c@x.example", None, "e@x.example"],
            "old_deactivated": [False, False, False, True, False],
            "new_deactivated": [True, False, False, None, True],
        }
    )
    empty_quarantine = pl.DataFrame(schema={"record": pl.Int64(), "source_user_id": pl.String(), "reason": pl.String()})
    markdown = summary_markdown(
        tenant="acme", outcome="stopped_by_guard", counts={}, quarantine=empty_quarantine, plan=plan, missing_groups=[]
    )
    assert "## Would have flagged, deactivated or deleted (not applied)" in markdown
    assert "| 7 | u7 | non_matching, deactivated |" in markdown
    assert "| 8 | u8 | terminated |" in markdown
    assert "| 10 | u10 | deleted | deleted by the deprovisioning policy |" in markdown
    assert "| 11 | u11 | non_matching, deactivated |" in markdown
    assert "u9" not in markdown  # unchanged employees are not listed
    assert "@x.example" not in markdown
    succeeded = summary_markdown(
        tenant="acme", outcome="succeeded", counts={}, quarantine=empty_quarantine, plan=plan, missing_groups=[]
    )
    assert "Would have flagged" not in succeeded


@pytest.mark.usefixtures("prefect_api")
def test_a_run_stopped_by_the_guard_changes_nothing_and_its_artifact_lists_what_it_would_flag(
    engine: Engine, upstream: Upstream
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from tasks.validate import GuardTripped

    people = staff(30)
    upstream.source.replace(in_one_group(people))
    setup_tenant(engine, upstream, ["g"])
    sync()
    before = table(engine)
    with engine.connect() as conn:
        ids = dict(conn.execute(select(Employee.source_user_id, Employee.id)).all())
    people[0]["employment_status"] = "INACTIVE"  # one leaver, and 11 moved out of scope: 12 of 30
    upstream.source.replace(dataset(people, [group("g", "G", [p["id"] for p in people[:19]])]))

    with pytest.raises(GuardTripped, match="12 employees of 30"):
        sync()

    assert table(engine) == before
    run = last_run(engine)
    assert run is not None and run.outcome == "stopped_by_guard"
    with get_client(sync_client=True) as client:
        (summary, *_) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sync-acme-summary"])),
            sort=ArtifactSort.CREATED_DESC,
        )
    markdown = str(summary.data)
    assert "stopped_by_guard" in markdown and "Nothing was changed" in markdown
    assert f"| {ids['u0']} | u0 | terminated |" in markdown
    for i in range(19, 30):
        assert f"| {ids[f'u{i}']} | u{i} | non_matching |" in markdown
    assert "| u1 |" not in markdown and f"| {ids['u1']} | u1 |" not in markdown
    assert "@acme.example" not in markdown and "Nummer" not in markdown  # no emails or names


# ---- the empty-source rule looks at the valid users in scope (issue 14, item 1) ----------------------------
# A small tenant (4 employees, below the guard's min_count of 10): the share rule alone never stops it, so
# only the empty-source rule stands between a broken answer and every employee flagged.

SMALL = [person(f"u{i}", f"staff{i}@acme.example", "Anna", f"Nummer{i}") for i in range(4)]
IN_G = Selection(group_ids=("g",))


def small_tenant(engine: Engine) -> dict[str, tuple[object, ...]]:
    """Tenant acme with the four members of group g synced by a clean first run; its table."""
    add_tenant(engine, "acme")
    sync_snapshot(engine, "acme", normalize(SMALL, [group("g", "G", [p["id"] for p in SMALL])]), selection=IN_G)
    before = table(engine)
    assert {row[1] for row in before.values()} == {"synced"} and len(before) == 4
    return before


def test_a_group_list_answering_empty_stops_a_small_tenant_naming_the_missing_groups(engine: Engine) -> None:
    # why: Entra lists memberships only on /group (user_ids); a group endpoint answering [] leaves every
    # user out of scope while the users endpoint still answers, so `fetched` is not 0.
    before = small_tenant(engine)
    _, planned = sync_snapshot(engine, "acme", normalize(SMALL, []), selection=IN_G, guard=Guard())
    assert planned.stop_reason is not None
    assert "none of the selected groups" in planned.stop_reason and "g" in planned.stop_reason
    assert planned.written is None
    assert table(engine) == before


def test_all_selected_groups_gone_stops_the_run_and_names_them(engine: Engine) -> None:
    before = small_tenant(engine)
    other = [group("h", "H", [p["id"] for p in SMALL])]  # g and k are gone; the users now sit in h
    selection = Selection(group_ids=("g", "k"))
    _, planned = sync_snapshot(engine, "acme", normalize(SMALL, other), selection=selection, guard=Guard())
    assert planned.stop_reason is not None and "g, k" in planned.stop_reason
    assert table(engine) == before


def test_selected_groups_without_valid_members_stop_a_small_tenant(engine: Engine) -> None:
    before = small_tenant(engine)
    _, planned = sync_snapshot(engine, "acme", normalize(SMALL, [group("g", "G", [])]), selection=IN_G, guard=Guard())
    assert planned.stop_reason is not None and "no users in scope" in planned.stop_reason
    assert table(engine) == before


def test_a_single_junk_record_does_not_flag_a_small_tenant(engine: Engine) -> None:
    # why: one record without id or email is "something fetched", but nobody to sync.
    before = small_tenant(engine)
    junk = normalize([{"first_name": "?"}], [group("g", "G", [])])
    _, planned = sync_snapshot(engine, "acme", junk, selection=IN_G, guard=Guard())
    assert planned.counts["fetched"] == 1
    assert planned.stop_reason is not None and "no users in scope" in planned.stop_reason
    assert table(engine) == before


@pytest.mark.usefixtures("prefect_api")
def test_a_run_whose_selected_groups_all_disappeared_is_stopped_by_the_guard_and_says_which(
    engine: Engine, upstream: Upstream
) -> None:
    from tasks.validate import GuardTripped

    people = staff(4)
    upstream.source.replace(in_one_group(people))
    setup_tenant(engine, upstream, ["g"])
    sync()
    before = table(engine)
    upstream.source.replace(dataset(people, []))  # the group endpoint answers []

    with pytest.raises(GuardTripped, match=r"none of the selected groups .*\(missing: g\)"):
        sync()
    assert table(engine) == before
    run = last_run(engine)
    assert run.outcome == "stopped_by_guard" and "(missing: g)" in run.error

    result = sync(override_guard=True)  # on purpose: everyone is flagged
    assert result["outcome"] == "succeeded" and result["counts"]["non_matching"] == 4
