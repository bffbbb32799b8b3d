"""Per-tenant schedules: what `provision schedule` accepts, Prefect kept in step by the reconciler, late
scheduled runs skipped instead of piling up, and the trigger each run records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from cli.main import app
from domain.schedules import Schedule, ScheduleError, checked, is_late, parse_every
from flows.triggers import trigger_of
from store.models import Employee, Integration, Run
from store.repo import disconnect
from store.schedules import set_schedule
from tests.upstreams import Upstream, in_one_group, setup_tenant, staff

DAY = Schedule(cron="0 3 * * *", timezone="Europe/Berlin")


# ---- what an admin may type ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("24h", 86400), ("30m", 1800), ("1d", 86400), ("1h30m", 5400)])
def test_intervals_are_read_as_written(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "soon", "1w", "24h and more", "10s"])
def test_anything_else_is_refused_with_one_sentence(text: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        parse_every(text)
    assert "\n" not in str(refused.value)


def test_cron_and_time_zone_are_checked_as_prefect_checks_them() -> None:
    assert checked("0 3 * * *", None, "Europe/Berlin") == DAY
    for cron, tz in [("0 3 * *", None), ("61 * * * *", None), ("0 3 * * *", "Mars/Olympus")]:
        with pytest.raises(ScheduleError):
            checked(cron, None, tz)
    with pytest.raises(ScheduleError, match="exactly one"):
        checked("0 3 * * *", 3600, None)


# ---- late scheduled runs -----------------------------------------------------------------------


def test_a_scheduled_run_later_than_one_period_is_late() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    hourly = Schedule(interval_seconds=3600)
    assert not is_late(now - timedelta(minutes=50), now, hourly)
    assert is_late(now - timedelta(minutes=70), now, hourly)
    assert not is_late(now - timedelta(hours=20), now, DAY)
    assert is_late(now - timedelta(days=2), now, DAY)


# ---- trigger ----------------------------------------------------------------------------------


def test_the_trigger_is_read_from_the_prefect_run() -> None:
    deployment = "5b0e6d5e-0000-0000-0000-000000000000"
    assert trigger_of(None) == "cli"
    assert trigger_of(SimpleNamespace(auto_scheduled=False, parent_task_run_id=None, deployment_id=None)) == "cli"
    assert trigger_of(SimpleNamespace(auto_scheduled=True, parent_task_run_id=None, deployment_id=deployment)) == (
        "schedule"
    )
    assert trigger_of(SimpleNamespace(auto_scheduled=False, parent_task_run_id="t", deployment_id=deployment)) == (
        "backfill"
    )
    assert trigger_of(SimpleNamespace(auto_scheduled=False, parent_task_run_id=None, deployment_id=deployment)) == (
        "manual"
    )


# ---- against a database and Prefect ----------------------------------------------------------


@pytest.fixture
def tenants(engine: Engine, upstream: Upstream) -> None:
    """acme, globex and initech, each syncing group g of one source of three people."""
    upstream.source.replace(in_one_group(staff(3)))
    for tenant in ("acme", "globex", "initech"):
        setup_tenant(engine, upstream, ["g"], tenant=tenant)


def managed() -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    from deployments.reconcile import MANAGED_TAG

    with get_client(sync_client=True) as client:
        found = client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[MANAGED_TAG]))
        )
    return {d.name: d for d in found}


@pytest.mark.usefixtures("prefect_api", "tenants")
def test_reconcile_keeps_one_deployment_per_scheduled_tenant_in_step(engine: Engine) -> None:
    from deployments.reconcile import reconcile

    set_schedule(engine, "acme", DAY)
    set_schedule(engine, "globex", Schedule(interval_seconds=86400))
    first = reconcile(engine, work_pool="provisioning")
    assert (sorted(first.created), first.removed) == (["sync-tenant-acme", "sync-tenant-globex"], [])
    deployments = managed()
    acme = deployments["sync-tenant-acme"]
    assert acme.parameters == {"tenant": "acme"}
    assert acme.global_concurrency_limit is not None and acme.global_concurrency_limit.limit == 1
    assert [(s.schedule.cron, s.schedule.timezone) for s in acme.schedules] == [("0 3 * * *", "Europe/Berlin")]
    assert deployments["sync-tenant-globex"].schedules[0].schedule.interval == timedelta(days=1)

    again = reconcile(engine, work_pool="provisioning")  # idempotent
    assert (again.created, again.updated, again.removed) == ([], [], [])
    assert managed()["sync-tenant-acme"].updated == acme.updated

    set_schedule(engine, "acme", Schedule(cron="30 6 * * 1-5", timezone="Europe/Berlin"))
    set_schedule(engine, "globex", None)
    disconnect(engine, "initech")  # never scheduled: nothing to remove
    changed = reconcile(engine, work_pool="provisioning")
    assert (changed.updated, changed.removed) == (["sync-tenant-acme"], ["sync-tenant-globex"])
    assert managed()["sync-tenant-acme"].schedules[0].schedule.cron == "30 6 * * 1-5"

    disconnect(engine, "acme")  # disconnecting ends the schedule and so the deployment
    assert reconcile(engine, work_pool="provisioning").removed == ["sync-tenant-acme"]
    assert managed() == {}


@pytest.mark.usefixtures("prefect_api", "tenants")
def test_a_late_scheduled_run_is_skipped_and_recorded(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.sync_tenant import sync_tenant

    set_schedule(engine, "acme", DAY)
    from prefect.runtime import flow_run

    def scheduled(at: datetime) -> None:  # the slot the Prefect scheduler gave the run
        monkeypatch.setitem(flow_run.FIELDS, "scheduled_start_time", lambda: at)

    scheduled(datetime.now(UTC) - timedelta(days=2))
    result = sync_tenant("acme", trigger="schedule")
    assert result["outcome"] == "skipped_late"
    with engine.connect() as conn:
        assert conn.execute(select(Employee.id)).all() == []
        run = conn.execute(select(Run)).one()
    assert (run.outcome, run.trigger) == ("skipped_late", "schedule")
    assert "more than one period" in (run.error or "")

    scheduled(datetime.now(UTC) - timedelta(minutes=5))
    assert sync_tenant("acme", trigger="schedule")["counts"]["created"] == 3  # on time: it runs


@pytest.mark.usefixtures("prefect_api", "tenants")
def test_schedule_command_stores_it_and_save_and_sync_runs_the_first_sync(engine: Engine) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["schedule", "acme", "--cron", "0 3 * * *", "--timezone", "Europe/Berlin", "--sync"])
    assert result.exit_code == 0, result.output
    assert "cron '0 3 * * *' (Europe/Berlin)" in result.output
    with engine.connect() as conn:
        row = conn.execute(select(Integration).where(Integration.tenant_id == "acme")).one()
        assert (row.schedule_cron, row.schedule_interval_seconds, row.schedule_timezone) == (
            "0 3 * * *",
            None,
            "Europe/Berlin",
        )
        assert conn.execute(select(Run.trigger, Run.outcome)).all() == [("cli", "succeeded")]

    assert runner.invoke(app, ["schedule", "acme", "--every", "12h"]).exit_code == 0
    refused = runner.invoke(app, ["schedule", "acme", "--every", "soon"])
    assert refused.exit_code == 1 and "not an interval" in refused.output
    assert runner.invoke(app, ["schedule", "acme", "--off"]).exit_code == 0
    with engine.connect() as conn:
        row = conn.execute(select(Integration).where(Integration.tenant_id == "acme")).one()
    assert (row.schedule_cron, row.schedule_interval_seconds) == (None, None)

    synced = runner.invoke(app, ["filter", "globex", "--group", "g", "--sync"])  # Save and Sync
    assert synced.exit_code == 0, synced.output
    assert "created" in synced.output
    with engine.connect() as conn:
        assert len(conn.execute(select(Employee.id).where(Employee.tenant_id == "globex")).all()) == 3
