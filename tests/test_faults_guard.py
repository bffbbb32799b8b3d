"""A run stopped by the mass-change guard changes nothing, and its summary lists what it would have flagged."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import Engine, select

from store.models import Employee
from tasks.report import summary_markdown
from tests.tables import last_run, table
from tests.upstreams import Upstream, in_one_group, setup_tenant, staff, sync
from tests.wire import dataset, group


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
