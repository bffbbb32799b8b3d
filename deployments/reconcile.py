"""Keep Prefect in step with the tenants' schedules: one deployment per scheduled tenant.

A tenant with a schedule has the deployment `sync-tenant-<tenant>` of the sync-tenant flow, with the
tenant as its parameter and the tenant's cron or interval as its schedule; the Prefect UI shows both,
and its "Run now" is that tenant's "Sync now". Changing the schedule updates the deployment; removing
it, or disconnecting the tenant, deletes the deployment. Only deployments carrying MANAGED_TAG are ever
touched, so the hand-made ones of prefect.yaml stay as they are.

Idempotent: a deployment that already matches is left alone (upserting it would make Prefect delete
and re-create its scheduled runs).

`forget_tenant` is offboarding's part here: what Prefect holds of a tenant being deleted goes with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from domain.schedules import Schedule
from store.schedules import scheduled_tenants

FLOW_NAME = "sync-tenant"
ENTRYPOINT = "flows/sync_tenant.py:sync_tenant"
MANAGED_TAG = "tenant-schedule"
DEFAULT_WORK_POOL = "provisioning"
# Workers run the code from a checkout at PROVISIONING_HOME, as for the deployments of prefect.yaml.
PULL_STEPS: list[dict[str, Any]] = [
    {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PROVISIONING_HOME }}"}}
]
# Scheduled runs created ahead of time; after an outage the flow skips the late ones (domain/schedules.py).
MAX_SCHEDULED_RUNS = 3


def deployment_name(tenant: str) -> str:
    return "sync-tenant-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", tenant).strip("-") or "tenant")


@dataclass
class Reconciled:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged, "removed": self.removed}


def _prefect_schedule(schedule: Schedule) -> Any:
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    if schedule.cron is not None:
        return CronSchedule(cron=schedule.cron, timezone=schedule.timezone or "UTC")
    if schedule.interval_seconds is None:
        raise ValueError("a schedule needs a cron string or an interval")
    return IntervalSchedule(interval=timedelta(seconds=schedule.interval_seconds), timezone=schedule.timezone or "UTC")


def _same_schedule(existing: Any, wanted: Any) -> bool:
    """Compare what the admin set: kind, cron or interval, and time zone (not server-filled defaults)."""
    if type(existing) is not type(wanted):
        return False
    if hasattr(wanted, "cron"):
        return bool(existing.cron == wanted.cron and existing.timezone == wanted.timezone)
    return bool(existing.interval == wanted.interval and existing.timezone == wanted.timezone)


def _matches(deployment: Any, tenant: str, schedule: Any, work_pool: str) -> bool:
    return (
        deployment.parameters == {"tenant": tenant}
        and deployment.work_pool_name == work_pool
        and deployment.entrypoint == ENTRYPOINT
        and len(deployment.schedules) == 1
        and deployment.schedules[0].active
        and _same_schedule(deployment.schedules[0].schedule, schedule)
    )


def _ensure_work_pool(client: Any, name: str) -> None:
    """A missing pool is created as a process pool (workers: `prefect worker start --pool NAME`)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    try:
        client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def reconcile(
    engine: Engine, *, work_pool: str = DEFAULT_WORK_POOL, only_tenants: list[str] | None = None
) -> Reconciled:
    """Make Prefect's per-tenant deployments match the database. `only_tenants`: touch only these tenants'."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags, FlowFilter, FlowFilterName
    from prefect.utilities.callables import parameter_schema

    from flows.sync_tenant import sync_tenant

    wanted = {
        deployment_name(s.tenant): (s.tenant, _prefect_schedule(s.schedule))
        for s in scheduled_tenants(engine)
        if only_tenants is None or s.tenant in only_tenants
    }
    in_scope = None if only_tenants is None else {deployment_name(t) for t in only_tenants}
    result = Reconciled()
    with get_client(sync_client=True) as client:
        existing = {
            d.name: d
            for d in client.read_deployments(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[MANAGED_TAG])),
            )
        }
        if wanted:
            _ensure_work_pool(client, work_pool)
        schema = parameter_schema(sync_tenant).model_dump_for_openapi()
        flow_id = None
        for name, (tenant, schedule) in sorted(wanted.items()):
            current = existing.get(name)
            if current is not None and _matches(current, tenant, schedule, work_pool):
                result.unchanged.append(name)
                continue
            flow_id = flow_id or client.create_flow_from_name(FLOW_NAME)
            client.create_deployment(  # an upsert by (flow, name)
                flow_id=flow_id,
                name=name,
                description=f"Scheduled employee sync of tenant {tenant}. Run now = Sync now.",
                entrypoint=ENTRYPOINT,
                path=".",
                pull_steps=PULL_STEPS,
                work_pool_name=work_pool,
                work_queue_name="default",
                parameters={"tenant": tenant},
                parameter_openapi_schema=schema,
                tags=["provisioning", MANAGED_TAG, f"tenant:{tenant}"],
                # Prefect's half of "one run per tenant": the database lock is the hard guarantee.
                concurrency_limit=1,
                schedules=[
                    DeploymentScheduleCreate(schedule=schedule, active=True, max_scheduled_runs=MAX_SCHEDULED_RUNS)
                ],
            )
            (result.updated if current is not None else result.created).append(name)
        for name, deployment in sorted(existing.items()):
            if name not in wanted and (in_scope is None or name in in_scope):
                client.delete_deployment(deployment.id)
                result.removed.append(name)
    return result


@dataclass
class TenantTraces:
    """What Prefect holds of one tenant: its deployments (by name), and how many flow runs and artifacts."""

    deployments: list[str] = field(default_factory=list)
    flow_runs: int = 0
    artifacts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"deployments": self.deployments, "flow_runs": self.flow_runs, "artifacts": self.artifacts}


def forget_tenant(tenant: str, *, dry_run: bool = False) -> TenantTraces:
    """Delete what Prefect holds of a tenant being deleted (or, `dry_run`, count it): its scheduled deployment
    (any carrying its `tenant:` tag, managed or not), the flow runs named for it (`sync-<tenant>`,
    `backfill-<tenant>`) and its artifacts (`sync-<tenant>`, `sync-<tenant>-summary`). Counts and ids only, no
    personal data, were ever there; the tenant's id goes with them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        DeploymentFilter,
        DeploymentFilterName,
        DeploymentFilterTags,
        FlowRunFilter,
        FlowRunFilterName,
    )

    from tasks.report import artifact_key

    found = TenantTraces()
    page = 200
    with get_client(sync_client=True) as client:
        deployments = {
            d.id: d
            for name_or_tag in (
                DeploymentFilter(name=DeploymentFilterName(any_=[deployment_name(tenant)])),
                DeploymentFilter(tags=DeploymentFilterTags(all_=[f"tenant:{tenant}"])),
            )
            for d in client.read_deployments(deployment_filter=name_or_tag)
            if f"tenant:{tenant}" in d.tags or MANAGED_TAG in d.tags  # never a hand-made one of another name
        }
        for deployment in sorted(deployments.values(), key=lambda d: d.name):
            found.deployments.append(deployment.name)
            if not dry_run:
                client.delete_deployment(deployment.id)
        runs = FlowRunFilter(name=FlowRunFilterName(any_=[f"sync-{tenant}", f"backfill-{tenant}"]))
        key = artifact_key(tenant)
        artifacts = ArtifactFilter(key=ArtifactFilterKey(any_=[key, f"{key}-summary"]))
        # Artifacts before the flow runs they belong to; deleted a page at a time, so the next page is at 0 again.
        offset = 0
        while found_artifacts := client.read_artifacts(artifact_filter=artifacts, limit=page, offset=offset):
            found.artifacts += len(found_artifacts)
            for artifact in found_artifacts:
                if not dry_run:
                    client.delete_artifact(artifact.id)
            offset += len(found_artifacts) if dry_run else 0
        offset = 0
        while batch := client.read_flow_runs(flow_run_filter=runs, limit=page, offset=offset):
            found.flow_runs += len(batch)
            for run in batch:
                if not dry_run:
                    client.delete_flow_run(run.id)
            offset += len(batch) if dry_run else 0
    return found
