"""The whole sync flow under Prefect, against the simulator over real HTTP, on SQLite and Postgres."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select

from simulator.faults import Fault
from store.models import Run
from store.repo import add_employee, list_employees
from tests.tables import last_run, table
from tests.upstreams import TOKEN, Upstream, in_one_group, setup_tenant, staff, sync
from tests.wire import dataset, group, person

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_two_syncs_follow_the_source(engine: Engine, upstream: Upstream) -> None:
    people = staff(6)
    upstream.source.replace(
        dataset(
            [*people, person("x1", "outsider@acme.example")],
            [
                group("g-root", "Company", []),
                group("g-eng", "Engineering", ["u0", "u1", "u2"], parent="g-root"),
                group("g-ops", "Ops", ["u3", "u4", "u5"]),
                group("g-other", "Other", ["x1"]),
            ],
        )
    )
    setup_tenant(engine, upstream, ["g-root", "g-ops"])
    add_employee(engine, "acme", email="PERSON0@ACME.example", first_name="Old", last_name="Name")
    add_employee(engine, "acme", email="nobody@acme.example", first_name="No", last_name="Body")

    first = sync(trigger="cli")
    assert first["outcome"] == "succeeded"
    assert {k: first["counts"][k] for k in ("fetched", "created", "linked", "non_matching", "filtered_out")} == {
        "fetched": 7,
        "created": 5,
        "linked": 1,
        "non_matching": 1,
        "filtered_out": 1,
    }
    rows = table(engine)
    assert rows["person0@acme.example"] == ("Anna", "synced", "u0")  # linked by email, source spelling
    assert rows["nobody@acme.example"][1:] == ("non_matching", None)
    assert "outsider@acme.example" not in rows  # outside the selected groups: never persisted

    people[1]["emails"][0]["email"] = "renamed@acme.example"
    people[2]["employment_status"] = "INACTIVE"
    groups = [
        group("g-root", "Company", []),
        group("g-eng", "Engineering", ["u0", "u1", "u2"], parent="g-root"),
        group("g-ops", "Ops", ["u4", "u5", "u9"]),
        group("g-other", "Other", ["x1", "u3"]),
    ]
    upstream.source.replace(dataset([*people, person("u9", "new@acme.example", "Zoë", "Neu")], groups))

    second = sync()
    assert {k: second["counts"][k] for k in ("created", "updated", "terminated", "non_matching", "unchanged")} == {
        "created": 1,
        "updated": 1,
        "terminated": 1,
        "non_matching": 1,
        "unchanged": 3,
    }
    rows = table(engine)
    assert rows["renamed@acme.example"][1:] == ("synced", "u1")
    assert "person1@acme.example" not in rows
    assert rows["person2@acme.example"][1:] == ("terminated", "u2")
    assert rows["person3@acme.example"][1:] == ("non_matching", "u3")
    assert rows["new@acme.example"] == ("Zoë", "synced", "u9")
    assert second["totals"] == {"non_matching": 2, "synced": 5, "terminated": 1}

    third = sync()
    assert third["counts"]["unchanged"] == 6  # idempotent: nothing left to change
    assert sum(third["counts"][k] for k in ("created", "linked", "updated", "non_matching", "terminated")) == 0


def test_run_rows_record_the_flow_run_and_counts(engine: Engine, upstream: Upstream) -> None:
    upstream.source.replace(in_one_group(staff(2)))
    setup_tenant(engine, upstream, ["g"])
    result = sync(trigger="cli")
    with engine.connect() as conn:
        run = conn.execute(select(Run).where(Run.id == result["run_id"])).one()
    assert run.outcome == "succeeded"
    assert run.trigger == "cli"
    assert run.flow_run_id is not None
    assert run.counts["created"] == 2
    assert run.ended_at is not None


def test_every_stage_is_a_task_run_of_the_tenants_flow_run(engine: Engine, upstream: Upstream) -> None:
    """Each stage shows in the Prefect UI as a task run of its own, with its state (design.md's flow shape)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    upstream.source.replace(in_one_group(staff(2)))
    setup_tenant(engine, upstream, ["g"])
    result = sync(trigger="cli")
    with engine.connect() as conn:
        flow_run_id = conn.execute(select(Run.flow_run_id).where(Run.id == result["run_id"])).scalar_one()
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    names = sorted(run.name.rsplit("-", 1)[0] for run in task_runs)
    assert names == sorted(
        [
            "extract users and groups",
            "flatten groups",
            "filter by selected groups",
            "validate source users",
            "match",
            "validate plan",
            "load and flag",
            "report",
        ]
    )
    assert {run.state.type.value for run in task_runs if run.state} == {"COMPLETED"}


def test_dry_run_reports_but_writes_no_employee(engine: Engine, upstream: Upstream) -> None:
    upstream.source.replace(in_one_group(staff(3)))
    setup_tenant(engine, upstream, ["g"])
    result = sync(dry_run=True)
    assert result["counts"]["created"] == 3
    assert result["totals"] == {"synced": 3}
    assert table(engine) == {}


def test_unreachable_or_refusing_source_fails_the_run_and_changes_nothing(engine: Engine, upstream: Upstream) -> None:
    upstream.source.replace(in_one_group(staff(2)))
    setup_tenant(engine, upstream, ["g"])
    sync()
    before = table(engine)
    upstream.faults.add(Fault(status=401))
    from sources.errors import SourceAuthError

    with pytest.raises(SourceAuthError):
        sync()
    assert table(engine) == before
    run = last_run(engine)
    assert run is not None
    assert (run.outcome, run.failed_stage) == ("failed", "extract")
    assert "401" in (run.error or "") and TOKEN not in (run.error or "")


def test_transient_upstream_errors_end_in_the_same_table_as_a_clean_run(engine: Engine, upstream: Upstream) -> None:
    upstream.source.replace(in_one_group(staff(150)))
    setup_tenant(engine, upstream, ["g"])
    upstream.faults.add(Fault(status=429, retry_after="0"), Fault(status=503), Fault(status=502, kind="group"))
    result = sync()
    assert upstream.faults.pending == 0
    assert result["counts"]["created"] == 150
    assert len(table(engine)) == 150


def test_guard_stops_a_run_that_would_flag_many_and_an_override_applies_it(engine: Engine, upstream: Upstream) -> None:
    from tasks.validate import GuardTripped

    people = staff(40)
    upstream.source.replace(in_one_group(people))
    setup_tenant(engine, upstream, ["g"])
    sync()
    before = table(engine)
    upstream.source.replace(dataset(people, [group("g", "G", [p["id"] for p in people[:25]])]))  # 15 gone
    with pytest.raises(GuardTripped, match="15 employees of 40"):
        sync()
    assert table(engine) == before
    run = last_run(engine)
    assert run is not None and run.outcome == "stopped_by_guard"
    assert run.counts["non_matching"] == 15

    result = sync(override_guard=True)
    assert result["counts"]["non_matching"] == 15
    assert len(list_employees(engine, "acme", "non_matching")) == 15


def test_empty_source_never_flags_everyone(engine: Engine, upstream: Upstream) -> None:
    from tasks.validate import GuardTripped

    upstream.source.replace(in_one_group(staff(3)))
    setup_tenant(engine, upstream, ["g"])
    sync()
    upstream.source.replace(dataset([], [group("g", "G", [])]))
    # why: keycloak#24669 — an empty answer is not "everyone left", even below the count threshold.
    with pytest.raises(GuardTripped, match="no users"):
        sync()
    assert {v[1] for v in table(engine).values()} == {"synced"}


def test_invalid_source_users_are_quarantined_and_the_rest_goes_on(engine: Engine, upstream: Upstream) -> None:
    people = [
        *staff(10),
        person("bad-mail", "not-an-address"),
        person("no-mail", None),
        person("u0", "dup-id@acme.example"),  # a second record with u0's id
    ]
    upstream.source.replace(in_one_group(people))
    setup_tenant(engine, upstream, ["g"])
    result = sync()
    assert result["counts"]["invalid"] == 4  # both u0 records, bad-mail, no-mail
    assert result["counts"]["created"] == 9
    assert "dup-id@acme.example" not in table(engine)
    assert "person0@acme.example" not in table(engine)


def test_each_run_publishes_its_counts_as_a_table_artifact_keyed_per_tenant(engine: Engine, upstream: Upstream) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    people = [*staff(3), person("bad", "no-at-sign")]
    upstream.source.replace(in_one_group(people))
    setup_tenant(engine, upstream, ["g"])
    result = sync()
    with get_client(sync_client=True) as client:
        tables = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sync-acme"])), sort=ArtifactSort.CREATED_DESC
        )
        summaries = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sync-acme-summary"])),
            sort=ArtifactSort.CREATED_DESC,
        )
    assert tables and summaries
    table_data = tables[0].data
    rows = json.loads(table_data) if isinstance(table_data, str) else table_data
    assert {row["count"]: row["value"] for row in rows} == result["counts"]
    markdown = str(summaries[0].data)
    assert "| bad |" in markdown and "email is not a valid address" in markdown
    assert "@acme.example" not in markdown and "Nummer" not in markdown  # no email or name in the artifact
