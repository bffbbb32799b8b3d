"""End to end on a real Prefect server: deploy from prefect.yaml, a worker, and the UI's "Run now".

Starts `prefect server start` on a free loopback port with a temporary PREFECT_HOME, creates the work
pool, runs `prefect deploy --all` from this checkout, schedules a tenant with `provision schedule`
(which reconciles its deployment on the server), starts `prefect worker start`, and creates a flow run
of the tenant's deployment exactly as the UI's "Run now" does (`create_flow_run_from_deployment`).
The employee database is PostgreSQL, the source the simulator over HTTP. Every process started here is
stopped (with its process group) at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from store.db import make_engine
from store.models import Employee, Run
from tests.prefect_server import REPO, free_port, process, run, wait_healthy
from tests.upstreams import TOKEN, Upstream, in_one_group, setup_tenant, staff

POOL = "provisioning"

# why: a real `prefect server`, `prefect deploy` and a process worker take a minute or more on 2 cores
pytestmark = pytest.mark.slow


def sync_through_the_admin_api(provision: list[str], env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """`provision serve` as its own process, a key from `provision api-key create`, POST /syncs (202 at
    once), then the run polled through its URL until it ends; returns the ended run."""
    printed = run([*provision, "api-key", "create", "--tenant", "acme", "--name", "e2e"], env)
    key = printed.strip().splitlines()[-1]
    port = free_port()
    service_env = {
        **env,
        "PROVISIONING_STATE_SECRET": "e2e-state-secret",
        "PROVISIONING_UNIFIED_WORKSPACE_ID": "ws-e2e",
        "PROVISIONING_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    with (
        process([*provision, "serve", "--port", str(port)], service_env, tmp_path / "serve.log") as serve,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}) as api,
    ):
        wait_healthy(f"http://127.0.0.1:{port}", serve, tmp_path / "serve.log", timeout=60)
        started = api.post("/tenants/acme/syncs", json={})
        assert started.status_code == 202, started.text
        first = api.get(started.json()["url"]).json()  # answered before a worker even picked the run up
        assert first["outcome"] in ("queued", "running"), first
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ended: dict[str, Any] = api.get(started.json()["url"]).json()
            if ended["outcome"] not in ("queued", "running"):
                break
            time.sleep(1)
        assert ended["outcome"] == "succeeded", (ended, (tmp_path / "serve.log").read_text()[-3000:])
    assert ended["trigger"] == "api" and ended["flow_run_id"]
    return ended


def test_run_now_on_a_tenants_deployment_syncs_it_through_a_worker(
    tmp_path: Path, postgres_url: str, upstream: Upstream
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started = time.monotonic()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    unset = "PROVISIONING_ALERT_WEBHOOK_URL"  # the deploy below finds no alerts to keep
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != unset}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PROVISIONING_HOME=str(REPO),
        PROVISIONING_DATABASE_URL=postgres_url,
        UNIFIED_API_TOKEN=TOKEN,
    )
    prefect = [sys.executable, "-m", "prefect"]
    provision = [str(Path(sys.executable).parent / "provision")]  # the installed console script
    upstream.source.replace(in_one_group(staff(5)))
    engine = make_engine(postgres_url)
    with process(
        [*prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "server.log"
    ) as server:
        setup_tenant(engine, upstream, ["g"])
        wait_healthy(api, server, tmp_path / "server.log")

        run([*prefect, "work-pool", "create", POOL, "--type", "process"], env)
        run([*prefect, "--no-prompt", "deploy", "--all"], env)
        scheduled = run(
            [*provision, "schedule", "acme", "--cron", "0 3 * * *", "--timezone", "Europe/Berlin"],
            env,
        )
        assert "created sync-tenant-acme" in scheduled
        again = json.loads(run([*provision, "deploy", "--json"], env))  # the whole reconcile, idempotent
        assert again == {
            "created": [],
            "updated": [],
            "unchanged": ["sync-tenant-acme"],
            "removed": [],
            "alerts": {"state": "off", "target": None},  # no PROVISIONING_ALERT_WEBHOOK_URL: no automation
        }

        with (
            process([*prefect, "worker", "start", "--pool", POOL, "--type", "process"], env, tmp_path / "worker.log"),
            temporary_settings(updates={PREFECT_API_URL: api}),
            get_client(sync_client=True) as client,
        ):
            names = {d.name for d in client.read_deployments()}
            assert {"sync-tenant", "sync-all", "sync-tenant-acme"} <= names
            deployment = client.read_deployment_by_name("sync-tenant/sync-tenant-acme")
            assert deployment.parameters == {"tenant": "acme"}
            assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [  # type: ignore[union-attr]
                ("0 3 * * *", "Europe/Berlin")
            ]

            flow_run = client.create_flow_run_from_deployment(deployment.id)  # what "Run now" posts
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                flow_run = client.read_flow_run(flow_run.id)
                if flow_run.state is not None and flow_run.state.is_final():
                    break
                time.sleep(1)
            worker_log = (tmp_path / "worker.log").read_text()[-4000:]
            assert flow_run.state is not None and flow_run.state.is_completed(), (flow_run.state, worker_log)

            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sync-acme"])),
                sort=ArtifactSort.CREATED_DESC,
            )
            assert artifacts, "no table artifact sync-acme"
            data: Any = artifacts[0].data
            rows = json.loads(data) if isinstance(data, str) else data
            counts = {row["count"]: row["value"] for row in rows}
            assert (counts["fetched"], counts["created"]) == (5, 5)

            # "Sync now" through the admin API: with PREFECT_API_URL set, a flow run of the sync-tenant
            # deployment that the worker runs, adopting the run row the API answered with.
            upstream.source.replace(in_one_group(staff(6)))
            api_run = sync_through_the_admin_api(provision, env, tmp_path)
            api_flow_run = client.read_flow_run(api_run["flow_run_id"])
            assert api_flow_run.deployment_id == client.read_deployment_by_name("sync-tenant/sync-tenant").id
            assert api_flow_run.parameters["run_id"] == api_run["run_id"]
            assert api_flow_run.parameters["trigger"] == "api"

    with engine.connect() as conn:
        employees = conn.execute(select(Employee.email, Employee.status).where(Employee.tenant_id == "acme")).all()
        run_rows = conn.execute(select(Run).where(Run.tenant_id == "acme").order_by(Run.started_at)).all()
    assert sorted(employees) == [(f"person{i}@acme.example", "synced") for i in range(6)]
    assert [(r.flow_run_id, r.trigger, r.outcome) for r in run_rows] == [
        (str(flow_run.id), "manual", "succeeded"),
        (api_run["flow_run_id"], "api", "succeeded"),
    ]
    assert api_run["counts"]["created"] == 1
    engine.dispose()
    print(f"e2e wall time: {time.monotonic() - started:.1f} s")


def test_a_sync_from_the_cli_prints_its_counts_only_and_its_run_log_reaches_the_server(
    tmp_path: Path, sqlite_url: str, upstream: Upstream
) -> None:
    """`provision sync` keeps Prefect's lines off the terminal (without --verbose), not out of the run's log on
    the server: each stage's figures are there for whoever opens the flow run in the UI."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.prefect_server import prefect_server, prefect_settings
    from tests.processes import clean_env, run_provision

    api = f"http://127.0.0.1:{free_port()}/api"
    upstream.source.replace(in_one_group(staff(3)))
    engine = make_engine(sqlite_url)
    setup_tenant(engine, upstream, ["g"])
    env = {**clean_env(tmp_path), **prefect_settings(tmp_path, api)}
    with prefect_server(tmp_path, env):
        synced = run_provision(
            "sync", "acme", env={**env, "PROVISIONING_DATABASE_URL": sqlite_url, "UNIFIED_API_TOKEN": TOKEN}
        )
        assert synced.returncode == 0, synced.stderr
        assert "created           3" in synced.stdout
        assert "INFO" not in synced.stdout + synced.stderr  # no Prefect line on the terminal
        with engine.connect() as conn:
            flow_run_id = conn.execute(select(Run.flow_run_id).where(Run.tenant_id == "acme")).scalar_one()
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            deadline = time.monotonic() + 30  # the client ships its logs in batches, within a few seconds
            while True:
                logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
                lines = [log.message for log in logs]
                if any(line.startswith("load: ") for line in lines) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    stages = {line.split(":")[0] for line in lines}
    assert {"extract", "match", "load"} <= stages, lines
