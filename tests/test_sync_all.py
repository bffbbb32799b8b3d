"""Backfills: one sync-tenant run per tenant, as its own (sub)flow run, failures isolated, outcome per tenant."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest
from sqlalchemy import Engine, func, select

from simulator.app import create_app
from simulator.serve import running_simulator
from simulator.source import SimulatorSource
from store.models import Employee, Run
from store.repo import add_tenant, connect, replace_groups, select_groups
from tests.wire import dataset, group, person

pytestmark = pytest.mark.usefixtures("prefect_api")
TOKEN = "backfill-token-4d2e"


@pytest.fixture
def tenants(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """acme and globex sync fine; initech's connection id is unknown to the source (404); umbrella has no groups."""
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    people = [person(f"u{i}", f"p{i}@acme.example") for i in range(4)]
    source = SimulatorSource(dataset(people, [group("g", "G", [p["id"] for p in people])]))
    with running_simulator(create_app(source, connection_id="conn-1", token=TOKEN)) as url:
        for tenant, connection in [
            ("acme", "conn-1"),
            ("globex", "conn-1"),
            ("initech", "conn-gone"),
            ("umbrella", "conn-1"),
        ]:
            add_tenant(engine, tenant)
            connect(engine, tenant, provider="entra", connection_id=connection, base_url=url)
            if tenant != "umbrella":
                groups = {"group_id": ["g"], "name": ["G"], "parent_id": [None], "member_count": [4]}
                replace_groups(engine, tenant, pl.DataFrame(groups))
                select_groups(engine, tenant, ["g"], all_users=False)
        yield


def employees_of(engine: Engine, tenant: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(Employee.tenant_id == tenant)).scalar_one())


@pytest.mark.usefixtures("tenants")
def test_backfill_runs_every_configured_tenant_and_one_failure_stops_no_other(engine: Engine) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from flows.sync_all import sync_all

    state = sync_all(max_concurrent=2, return_state=True)
    results = state.result()
    assert set(results) == {"acme", "globex", "initech"}  # umbrella has nothing selected: not a candidate
    assert results["acme"]["outcome"] == results["globex"]["outcome"] == "succeeded"
    assert results["initech"]["outcome"] == "failed" and "404" in results["initech"]["error"]
    assert employees_of(engine, "acme") == employees_of(engine, "globex") == 4
    with engine.connect() as conn:
        triggers = set(conn.execute(select(Run.tenant_id, Run.trigger)).all())
    assert triggers == {("acme", "backfill"), ("globex", "backfill"), ("initech", "backfill")}
    # Each tenant's run is its own flow run, a child of the backfill's, with the tenant in its name.
    with get_client(sync_client=True) as client:
        parent = state.state_details.flow_run_id
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent]))
        )
    assert sorted(r.name for r in children) == ["backfill-acme", "backfill-globex", "backfill-initech"]


@pytest.mark.usefixtures("tenants")
def test_backfill_of_a_list_as_a_dry_run_writes_no_employee(engine: Engine) -> None:
    from flows.sync_all import sync_all

    results = sync_all(tenants=["globex"], dry_run=True)
    assert list(results) == ["globex"]
    assert results["globex"]["outcome"] == "succeeded"
    assert results["globex"]["counts"]["created"] == 4
    assert employees_of(engine, "globex") == 0
