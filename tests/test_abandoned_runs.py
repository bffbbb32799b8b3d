"""A run whose worker died leaves its row `running`; the next holder of the tenant's lock finds it and
marks it `abandoned`, with the time it was found (issue 14, item 7). On SQLite and on PostgreSQL.

The rule rests on one invariant: a run row is `running` only while its run holds the tenant's lock (before
that, and while it waits for the lock, it is `queued`). So whoever holds the lock knows that every other
`running` row of the tenant is stale.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from typer.testing import CliRunner

from cli.main import app as cli_app
from store.locks import tenant_lock
from store.models import Run, RunChange, TenantLock, utcnow
from store.repo import (
    QUEUED_SECONDS,
    StoreConflict,
    add_tenant,
    adopt_run,
    connect,
    list_runs,
    select_groups,
    start_run,
)
from tests.frames import source_user, users
from tests.runs import snapshot_of


def _run(engine: Engine, tenant: str, outcome: str, *, flow_run_id: str | None = None, age: float = 0) -> str:
    run_id = start_run(
        engine, tenant, trigger="cli", parameters={}, flow_run_id=flow_run_id, dry_run=False, outcome=outcome
    )
    if age:
        with engine.begin() as conn:
            conn.execute(update(Run).where(Run.id == run_id).values(started_at=utcnow() - timedelta(seconds=age)))
    return run_id


def _row(engine: Engine, run_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Run).where(Run.id == run_id)).one()


@pytest.fixture
def tenants(engine: Engine) -> Engine:
    add_tenant(engine, "acme")
    add_tenant(engine, "globex")
    return engine


def test_a_crashed_runs_row_becomes_abandoned_when_the_lock_is_next_taken(tenants: Engine) -> None:
    engine = tenants
    crashed = _run(engine, "acme", "running", flow_run_id="f-1", age=3600)
    finished = _run(engine, "acme", "succeeded")
    other_tenant = _run(engine, "globex", "running")
    before = utcnow()
    with tenant_lock(engine, "acme"):
        row = _row(engine, crashed)
        assert row.outcome == "abandoned"
        assert row.ended_at is not None and before <= row.ended_at <= utcnow()
        assert row.error.startswith("Abandoned: found still running when the tenant's lock was next taken at ")
        assert "nothing was written" in row.error and "\n" not in row.error
    assert _row(engine, finished).outcome == "succeeded"
    assert _row(engine, other_tenant).outcome == "running"  # another tenant's run is none of acme's business
    assert [r["outcome"] for r in list_runs(engine, "acme")].count("abandoned") == 1
    listed = CliRunner().invoke(cli_app, ["runs", "acme"])
    assert listed.exit_code == 0
    (line,) = [line for line in listed.output.splitlines() if crashed in line]
    assert " abandoned " in line and "Abandoned: found still running" in line


def test_a_late_flow_run_takes_back_its_queued_row_that_was_abandoned(tenants: Engine) -> None:
    engine = tenants
    late = _run(engine, "acme", "queued", age=QUEUED_SECONDS + 60)  # a door queued it; no worker came in time
    with tenant_lock(engine, "acme"):
        pass
    assert _row(engine, late).outcome == "abandoned"
    adopt_run(engine, "acme", late, flow_run_id="f-late")  # ...until its flow run starts after all
    row = _row(engine, late)
    assert (row.outcome, row.flow_run_id, row.ended_at, row.error) == ("queued", "f-late", None, None)
    with pytest.raises(StoreConflict, match="not waiting to start"):
        adopt_run(engine, "acme", late, flow_run_id="f-other")  # one flow run per row


def test_a_crashed_run_whose_load_had_committed_says_so(tenants: Engine) -> None:
    engine = tenants
    crashed = _run(engine, "acme", "running", flow_run_id="f-1")
    with engine.begin() as conn:  # its load committed, then the worker died before the report
        conn.execute(insert(RunChange).values(run_id=crashed, seq=1, tenant_id="acme", action="created"))
    with tenant_lock(engine, "acme"):
        pass
    row = _row(engine, crashed)
    assert row.outcome == "abandoned" and "its load had committed" in row.error and crashed in row.error


def test_a_run_waiting_for_the_lock_is_left_alone_and_a_queued_run_nobody_started_is_abandoned(
    tenants: Engine,
) -> None:
    engine = tenants
    waiting = _run(engine, "acme", "queued", flow_run_id="f-2", age=2 * QUEUED_SECONDS)  # a flow run, waiting
    fresh = _run(engine, "acme", "queued")  # a door queued it a moment ago; its flow run is starting
    lost = _run(engine, "acme", "queued", age=QUEUED_SECONDS + 60)  # no flow run ever took it
    with tenant_lock(engine, "acme"):
        pass
    assert _row(engine, waiting).outcome == "queued"
    assert _row(engine, fresh).outcome == "queued"
    row = _row(engine, lost)
    assert row.outcome == "abandoned" and "no flow run picked it up within 10 minutes" in row.error


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_a_crashed_holders_lease_is_taken_over_and_its_run_abandoned(tenants: Engine) -> None:
    engine = tenants
    crashed = _run(engine, "acme", "running", flow_run_id="f-1")
    now = utcnow()
    with engine.begin() as conn:  # the crashed run's lease, expired: nobody renews it any more
        conn.execute(
            insert(TenantLock).values(
                tenant_id="acme", owner="crashed", acquired_at=now, expires_at=now - timedelta(seconds=1)
            )
        )
    with tenant_lock(engine, "acme"):
        pass
    assert _row(engine, crashed).outcome == "abandoned"


# ---- through the flow -------------------------------------------------------------------------------------


FIVE = snapshot_of(users(*[source_user(f"u{i}", f"p{i}@acme.example") for i in range(5)]))


@pytest.fixture
def flow_tenant(tenants: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """acme syncing all users of a fixed source (the extract is replaced: nothing is contacted)."""
    import flows.sync_tenant

    connect(tenants, "acme", provider="entra", connection_id="conn-1", base_url="http://127.0.0.1:9")
    select_groups(tenants, "acme", [], all_users=True)
    monkeypatch.setattr(flows.sync_tenant, "TASKS", replace(flows.sync_tenant.TASKS, extract=lambda _config: FIVE))
    return tenants


@pytest.mark.usefixtures("prefect_api")
def test_the_next_flow_run_abandons_a_crashed_run_and_succeeds(flow_tenant: Engine) -> None:
    from flows.sync_tenant import sync_tenant

    crashed = _run(flow_tenant, "acme", "running", flow_run_id="f-1", age=60)
    result = sync_tenant("acme")
    assert result["outcome"] == "succeeded"
    assert _row(flow_tenant, crashed).outcome == "abandoned"
    assert [r["outcome"] for r in list_runs(flow_tenant, "acme")] == ["succeeded", "abandoned"]


@pytest.mark.usefixtures("prefect_api")
def test_a_flow_run_waiting_for_the_lock_is_queued_until_it_holds_it(flow_tenant: Engine) -> None:
    from flows.sync_tenant import sync_tenant

    with ThreadPoolExecutor(1) as pool:
        with tenant_lock(flow_tenant, "acme"):  # another run holds the tenant
            waiting = pool.submit(sync_tenant, "acme", wait_for_lock=True)
            deadline = time.monotonic() + 60
            while not list_runs(flow_tenant, "acme"):
                assert time.monotonic() < deadline, "the waiting run never recorded its row"
                time.sleep(0.1)
            time.sleep(1)  # it is waiting for the lock now
            assert [r["outcome"] for r in list_runs(flow_tenant, "acme")] == ["queued"]  # not `running`: no lock
        assert waiting.result(timeout=120)["outcome"] == "succeeded"
    assert [r["outcome"] for r in list_runs(flow_tenant, "acme")] == ["succeeded"]
