"""Backfills: one sync-tenant run per tenant, as its own (sub)flow run, failures isolated, outcome per tenant."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from store.models import Run
from store.repo import add_tenant, connect
from tests.tables import employee_count
from tests.upstreams import Upstream, in_one_group, setup_tenant
from tests.wire import person

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def tenants(engine: Engine, upstream: Upstream) -> None:
    """acme and globex sync fine; initech's connection id is unknown to the source (404); umbrella has no groups."""
    upstream.source.replace(in_one_group([person(f"u{i}", f"p{i}@acme.example") for i in range(4)]))
    setup_tenant(engine, upstream, ["g"], tenant="acme")
    setup_tenant(engine, upstream, ["g"], tenant="globex")
    setup_tenant(engine, upstream, ["g"], tenant="initech", connection_id="conn-gone")
    add_tenant(engine, "umbrella")  # connected, nothing selected
    connect(
        engine,
        "umbrella",
        provider="entra",
        connection_id=upstream.add_connection("conn-umbrella"),
        base_url=upstream.url,
    )


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
    assert employee_count(engine, "acme") == employee_count(engine, "globex") == 4
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
    assert employee_count(engine, "globex") == 0
