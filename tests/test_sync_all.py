"""Backfills: one sync-tenant run per tenant, as its own (sub)flow run, failures isolated, outcome per tenant."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import httpx
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


def heartbeats_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the flow runs that send a Prefect flow-run heartbeat from now on (each sends its first one
    as it starts)."""
    from prefect.flow_engine import FlowRunEngine

    real = FlowRunEngine._emit_flow_run_heartbeat
    sent: list[str] = []

    def emit(self: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(self.flow_run.name)
        real(self, *args, **kwargs)

    monkeypatch.setattr(FlowRunEngine, "_emit_flow_run_heartbeat", emit)
    return sent


@pytest.mark.usefixtures("tenants")
def test_the_tenants_runs_of_a_backfill_send_no_heartbeats_of_their_own_and_the_backfill_keeps_its(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tenant's run does not wait at its end for a heartbeat thread that sleeps in one-second steps
    (flows/sync_tenant.py `without_heartbeats`); the backfill's own run, whose process runs them, keeps it."""
    from flows.sync_all import sync_all

    sent = heartbeats_sent(monkeypatch)
    results = sync_all(tenants=["acme", "globex"], max_concurrent=2)
    assert {t: r["outcome"] for t, r in results.items()} == {"acme": "succeeded", "globex": "succeeded"}
    assert sent == ["backfill-acme,globex"]


# ---- many tenants: really concurrent, and not lost to a transient failure of the Prefect API -----------------


@pytest.fixture
def four(engine: Engine, upstream: Upstream) -> list[str]:
    """Four tenants, t1..t4, each with a connection of its own to the same source of four people."""
    upstream.source.replace(in_one_group([person(f"u{i}", f"p{i}@acme.example") for i in range(4)]))
    names = ["t1", "t2", "t3", "t4"]
    for name in names:
        setup_tenant(engine, upstream, ["g"], tenant=name)
    return names


@pytest.mark.parametrize("max_concurrent", [2, 4])
def test_max_concurrent_tenants_run_at_once_and_never_more(
    engine: Engine, four: list[str], max_concurrent: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.sync_tenant
    from flows.sync_all import sync_all
    from tasks.extract import extract

    # why: each run's extract waits until `max_concurrent` runs are inside it. Were the runs one after another,
    # the barrier would break after its timeout and the tenants fail; no clock is compared.
    together = threading.Barrier(max_concurrent, timeout=120)
    inside, peak, lock = [0], [0], threading.Lock()

    def extract_together(config: Any) -> Any:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        try:
            together.wait()
            return extract(config)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(flows.sync_tenant, "TASKS", replace(flows.sync_tenant.TASKS, extract=extract_together))
    results = sync_all(tenants=four, max_concurrent=max_concurrent)
    assert {t: r["outcome"] for t, r in results.items()} == dict.fromkeys(four, "succeeded")
    assert peak[0] == max_concurrent
    with engine.connect() as conn:
        spans = sorted(conn.execute(select(Run.started_at, Run.ended_at)).all())
    # The run rows say so too: the first `max_concurrent` runs were all running at one moment.
    first = spans[:max_concurrent]
    assert max(start for start, _ in first) < min(end for _, end in first)


def _api_error(status: int, path: str = "/api/flow_runs/") -> Exception:
    """What Prefect's client raises for an error answer of its API (a real response, Prefect's own exception)."""
    from prefect.exceptions import PrefectHTTPStatusError

    request = httpx.Request("POST", f"http://127.0.0.1:4200{path}")
    response = httpx.Response(status, json={"exception_message": "Internal Server Error"}, request=request)
    return PrefectHTTPStatusError.from_httpx_error(
        httpx.HTTPStatusError(f"Server error '{status}'", request=request, response=response)
    )


def _failing_create_flow_run(monkeypatch: pytest.MonkeyPatch, failures: dict[str, list[Exception]]) -> list[str]:
    """Creating a tenant's flow run raises that tenant's next failure while it has any; returns each tenant's
    attempts in order."""
    from prefect.client.orchestration import SyncPrefectClient

    import flows.sync_all

    monkeypatch.setattr(flows.sync_all, "START_RETRY_DELAYS", (0.0, 0.0))
    real = SyncPrefectClient.create_flow_run
    attempts: list[str] = []

    def create_flow_run(self: Any, flow: Any, *args: Any, **kwargs: Any) -> Any:
        tenant = (kwargs.get("parameters") or {}).get("tenant")
        if tenant is not None:
            attempts.append(tenant)
            if failures.get(tenant):
                raise failures[tenant].pop(0)
        return real(self, flow, *args, **kwargs)

    monkeypatch.setattr(SyncPrefectClient, "create_flow_run", create_flow_run)
    return attempts


def test_a_transient_prefect_api_failure_while_starting_a_tenants_run_is_retried_and_the_tenant_syncs(
    engine: Engine, four: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.sync_all import sync_all

    failures: dict[str, list[Exception]] = {
        "t1": [_api_error(500)],
        "t2": [_api_error(409)],
        "t3": [httpx.ReadError("[Errno 104] Connection reset by peer"), _api_error(503)],  # twice, then it works
    }
    attempts = _failing_create_flow_run(monkeypatch, failures)
    results = sync_all(tenants=four, max_concurrent=2)
    assert {t: r["outcome"] for t, r in results.items()} == dict.fromkeys(four, "succeeded")
    assert sorted(attempts) == ["t1", "t1", "t2", "t2", "t3", "t3", "t3", "t4"]
    for tenant in four:
        assert employee_count(engine, tenant) == 4
    with engine.connect() as conn:  # one run each: a retry never starts a second
        assert sorted(conn.execute(select(Run.tenant_id)).scalars()) == four


def test_a_prefect_api_failure_that_persists_is_reported_with_its_cause_and_its_traceback_is_logged_there(
    engine: Engine, four: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    from flows.sync_all import sync_all

    failures: dict[str, list[Exception]] = {"t2": [_api_error(500) for _ in range(10)]}
    attempts = _failing_create_flow_run(monkeypatch, failures)
    state = sync_all(tenants=four, max_concurrent=2, return_state=True)
    results = state.result()
    assert attempts.count("t2") == 3  # the first try and two more
    assert {t: r["outcome"] for t, r in results.items() if t != "t2"} == dict.fromkeys(["t1", "t3", "t4"], "succeeded")
    assert results["t2"]["outcome"] == "failed"
    error = results["t2"]["error"]
    assert error.startswith("the Prefect API answered 500 Internal Server Error to POST /api/flow_runs/")
    assert "(Internal Server Error) (3 attempts) before its run started" in error
    with get_client(sync_client=True) as client:
        backfill = client.read_flow_run(state.state_details.flow_run_id)
        assert error.endswith(f"the traceback is in the log of flow run {backfill.name}")
        APILogWorker.drain_all(timeout=30)  # the log lines still on their way to the API
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[backfill.id])))
    # The log the sentence names holds the failure with its traceback.
    assert any("Tenant t2: the Prefect API answered 500" in log.message and "Traceback" in log.message for log in logs)
    with engine.connect() as conn:
        assert "t2" not in set(conn.execute(select(Run.tenant_id)).scalars())
