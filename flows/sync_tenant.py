"""The per-tenant sync flow: wires the stages of design.md together, and nothing else."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from sqlalchemy import Engine

from deployments.schedules import late_reason
from flows.triggers import TRIGGERS, current_trigger
from settings import MissingTokenError
from sources.errors import SourceError
from store.db import make_engine
from store.load import LoadError
from store.locks import TenantBusyError, tenant_lock
from store.models import Integration, utcnow
from store.repo import StoreError, finish_run, integration_settings, replace_groups, start_run
from store.schedules import schedule_of
from tasks.extract import extract_task, source_config
from tasks.filter import filter_task
from tasks.flatten import flatten_task
from tasks.load import load_task
from tasks.match import match_task
from tasks.report import count, failure_markdown, publish, report_task, summary_markdown, totals
from tasks.validate import (
    Guard,
    GuardTripped,
    InvalidPlanError,
    MostlyInvalidError,
    validate_plan_task,
    validate_source_task,
)

# Errors whose message is written for a person and carries no secret and no personal data.
EXPLAINED = (
    SourceError,
    StoreError,
    LoadError,
    MissingTokenError,
    MostlyInvalidError,
    InvalidPlanError,
    GuardTripped,
)


def describe(exc: BaseException) -> str:
    """What a run row and an artifact may say about a failure."""
    if isinstance(exc, EXPLAINED):
        return str(exc)
    return f"unexpected {type(exc).__name__}; the worker's log has the traceback"


@flow(name="sync-tenant", flow_run_name="sync-{tenant}")
def sync_tenant(
    tenant: str,
    dry_run: bool = False,
    override_guard: bool = False,
    trigger: str | None = None,
    wait_for_lock: bool = False,
) -> dict[str, Any]:
    """Sync one tenant's employees with its source. Returns the run id, outcome, counts and totals.

    `trigger` (manual, schedule, backfill, cli) is read from the Prefect run when not given. Only one
    run per tenant at a time: a second one is refused, or waits for the first with `wait_for_lock`.
    """
    if trigger is not None and trigger not in TRIGGERS:
        raise ValueError(f"Unknown trigger {trigger!r}; one of {', '.join(TRIGGERS)}.")
    engine = make_engine()
    integration = integration_settings(engine, tenant)
    parameters = {"dry_run": dry_run, "override_guard": override_guard, "wait_for_lock": wait_for_lock}
    trigger = trigger or current_trigger()
    run_id = start_run(
        engine,
        tenant,
        trigger=trigger,
        parameters=parameters,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        dry_run=dry_run,
    )
    schedule = schedule_of(integration)
    if trigger == "schedule" and schedule is not None:
        late = late_reason(flow_run.scheduled_start_time, utcnow(), schedule)
        if late:
            finish_run(engine, run_id, outcome="skipped_late", error=late)
            return {"run_id": run_id, "outcome": "skipped_late", "dry_run": dry_run, "counts": {}, "totals": {}}
    try:
        with tenant_lock(engine, tenant, wait=wait_for_lock):
            return run_stages(engine, integration, run_id, dry_run=dry_run, override_guard=override_guard)
    except TenantBusyError as exc:
        finish_run(engine, run_id, outcome="refused", failed_stage="lock", error=str(exc))
        raise


def run_stages(
    engine: Engine, integration: Integration, run_id: str, *, dry_run: bool, override_guard: bool
) -> dict[str, Any]:
    """The stages of one run, in order, under the tenant's lock; the run row says where a failure happened."""
    tenant = integration.tenant_id
    config = source_config(integration)
    guard = Guard(max_share=integration.guard_max_share, min_count=integration.guard_min_count)
    stage = "extract"
    try:
        snapshot = extract_task(config)
        stage = "flatten"
        flat = flatten_task(snapshot.groups, snapshot.memberships, snapshot.users)
        replace_groups(engine, tenant, flat.groups)
        stage = "filter"
        scope = filter_task(
            snapshot.users, flat.memberships, flat.groups, list(integration.selected_group_ids), integration.all_users
        )
        stage = "validate"
        validated = validate_source_task(scope.users)
        stage = "match"
        plan = match_task(tenant, validated.users, validated.held_user_ids)
        stage = "validate"
        plan, stop_reason = validate_plan_task(plan, snapshot.users.height, guard, override_guard)
        counts = count(
            plan,
            fetched=snapshot.users.height,
            filtered_out=scope.filtered_out,
            invalid=validated.quarantine.height,
        )
        outcome = "stopped_by_guard" if stop_reason else "succeeded"
        if not stop_reason:
            stage = "load"
            load_task(tenant, run_id, plan, validated.quarantine, dry_run)
        stage = "report"
        note = f"Stopped before loading: {stop_reason}. Nothing was changed." if stop_reason else None
        if dry_run and not stop_reason:
            note = "Dry run: nothing was written to the employee table."
        finish_run(engine, run_id, outcome=outcome, counts=counts, error=stop_reason)
        markdown = summary_markdown(
            tenant=tenant,
            outcome=outcome,
            counts=counts,
            quarantine=validated.quarantine,
            plan=plan,
            missing_groups=scope.missing_groups,
            note=note,
        )
        report_task(tenant, counts, markdown)
    except Exception as exc:
        finish_run(engine, run_id, outcome="failed", failed_stage=stage, error=describe(exc))
        publish(tenant, {}, failure_markdown(tenant=tenant, run_id=run_id, stage=stage, reason=describe(exc)))
        raise
    if stop_reason:
        raise GuardTripped(f"tenant {tenant}: {stop_reason}; re-run with override_guard=True to apply it")
    return {"run_id": run_id, "outcome": outcome, "dry_run": dry_run, "counts": counts, "totals": totals(plan)}
