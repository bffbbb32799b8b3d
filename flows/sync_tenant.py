"""The per-tenant sync flow: wires the stages of design.md together, and nothing else (but giving the run's
memory back to the operating system when it ends: a worker process runs many, and how a process that runs it
in-process for a caller who watches it goes without flow-run heartbeats)."""

from __future__ import annotations

import settings.allocator  # noqa: F401  (first: polars reads its allocator's settings as it loads)

# isort: split

import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from sqlalchemy import Engine

from domain.errors import describe
from domain.schedules import late_reason
from flows.alerts import alert_run_end
from flows.triggers import TRIGGERS, current_trigger
from pipeline import PLAIN, PlannedRun, Progress, sync_run
from store.db import make_engine
from store.locks import TenantBusyError, tenant_lock
from store.models import Integration, utcnow
from store.repo import (
    StoreError,
    adopt_run,
    begin_run,
    finish_run,
    integration_settings,
    load_committed,
    schedule_of,
    start_run,
)
from tasks.extract import extract_task
from tasks.filter import filter_task
from tasks.flatten import flatten_task
from tasks.load import load_task
from tasks.match import match_task
from tasks.report import failure_markdown, publish, report_task, summary_markdown, totals
from tasks.validate import GuardTripped, validate_plan_task, validate_source_task

# The stages as Prefect tasks: the same functions as pipeline.PLAIN, each a task run of its own in the flow run
# (its state, timing and retries visible in the UI), none caching or persisting its result (personal data).
TASKS = replace(
    PLAIN,
    extract=extract_task,
    flatten=flatten_task,
    filter=filter_task,
    validate_users=validate_source_task,
    match=match_task,
    validate_plan=validate_plan_task,
    load=load_task,
)


@flow(name="sync-tenant", flow_run_name="sync-{tenant}")
def sync_tenant(
    tenant: str,
    dry_run: bool = False,
    override_guard: bool = False,
    trigger: str | None = None,
    wait_for_lock: bool = False,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Sync one tenant's employees with its source. Returns the run id, outcome, counts and totals.

    `trigger` (manual, schedule, backfill, cli, api) is read from the Prefect run when not given. Only one
    run per tenant at a time: a second one is refused, or waits for the first with `wait_for_lock`.
    `run_id` names a queued run row a door created for this run (the admin API answers with its id before
    the flow run starts); without it the flow creates its own.
    """
    if trigger is not None and trigger not in TRIGGERS:
        raise ValueError(f"Unknown trigger {trigger!r}; one of {', '.join(TRIGGERS)}.")
    engine = make_engine()
    flow_run_id = str(flow_run.id) if flow_run.id else None
    if run_id is not None:
        adopt_run(engine, tenant, run_id, flow_run_id=flow_run_id)
    try:
        integration = integration_settings(engine, tenant)
    except StoreError as exc:
        if run_id is not None:  # the door's queued row must not stay queued
            finish_run(engine, run_id, outcome="failed", failed_stage="extract", error=str(exc))
            alert_run_end(
                tenant,
                run_id,
                trigger=trigger or current_trigger(),
                outcome="failed",
                failed_stage="extract",
                error=str(exc),
                dry_run=dry_run,
            )
        raise
    parameters = {"dry_run": dry_run, "override_guard": override_guard, "wait_for_lock": wait_for_lock}
    trigger = trigger or current_trigger()
    if run_id is None:  # `queued` until it holds the tenant's lock (store/repo.py abandon_stale_runs says why)
        run_id = start_run(
            engine,
            tenant,
            trigger=trigger,
            parameters=parameters,
            flow_run_id=flow_run_id,
            dry_run=dry_run,
            outcome="queued",
        )
    schedule = schedule_of(integration)
    if trigger == "schedule" and schedule is not None:
        late = late_reason(flow_run.scheduled_start_time, utcnow(), schedule)
        if late:
            finish_run(engine, run_id, outcome="skipped_late", error=late)
            return {"run_id": run_id, "outcome": "skipped_late", "dry_run": dry_run, "counts": {}, "totals": {}}
    try:
        with tenant_lock(engine, tenant, wait=wait_for_lock):
            begin_run(engine, run_id)
            return run_stages(
                engine, integration, run_id, dry_run=dry_run, override_guard=override_guard, trigger=trigger
            )
    except TenantBusyError as exc:
        finish_run(engine, run_id, outcome="refused", failed_stage="lock", error=str(exc))
        raise
    finally:
        give_memory_back()


def run_stages(
    engine: Engine, integration: Integration, run_id: str, *, dry_run: bool, override_guard: bool, trigger: str
) -> dict[str, Any]:
    """The stages of one run under the tenant's lock; the run row says where a failure happened, and a run
    that ends failed or stopped by the guard emits its alert (flows/alerts.py says when that reaches anyone)."""
    tenant = integration.tenant_id
    logger = get_run_logger()
    progress = Progress(log=logger.info)
    planned: PlannedRun | None = None
    outcome = "succeeded"
    try:
        planned = sync_run(
            engine, integration, run_id, dry_run=dry_run, override_guard=override_guard, stages=TASKS, progress=progress
        )
        outcome = "stopped_by_guard" if planned.stop_reason else "succeeded"
        progress.step("report", lambda _: f"run {outcome}", _report, engine, tenant, run_id, planned, outcome, dry_run)
    except BaseException as exc:  # an interrupt (Ctrl-C, a stop signal) too: the run row must say what happened
        interrupted = not isinstance(exc, Exception)
        stage = progress.failed_stage
        reason = "interrupted (Ctrl-C or a stop signal)" if interrupted else describe(exc)
        if stage == "report" or (stage == "load" and load_committed(engine, run_id)):
            # The load committed: the table holds what the counts say, whatever happened to the report.
            note = f"The load committed; reporting the run then failed: {reason}."
            finish_run(engine, run_id, outcome=outcome, counts=planned.counts if planned else None, error=note)
            logger.warning(note)
            if interrupted or planned is None:
                raise
        else:
            if interrupted:
                reason = f"Interrupted during {stage}: nothing was written to the employee table."
            finish_run(engine, run_id, outcome="failed", failed_stage=stage, error=reason)
            alert_run_end(
                tenant, run_id, trigger=trigger, outcome="failed", failed_stage=stage, error=reason, dry_run=dry_run
            )
            if not interrupted:  # after an interrupt, the orchestrator may be gone: no artifact then
                markdown = failure_markdown(
                    tenant=tenant, run_id=run_id, stage=stage, reason=reason, not_done=progress.not_done
                )
                _publish_quietly(tenant, markdown)
            raise
    if planned.stop_reason:
        alert_run_end(
            tenant, run_id, trigger=trigger, outcome="stopped_by_guard", error=planned.stop_reason, dry_run=dry_run
        )
        raise GuardTripped(f"tenant {tenant}: {planned.stop_reason}; re-run with override_guard=True to apply it")
    return {
        "run_id": run_id,
        "outcome": outcome,
        "dry_run": dry_run,
        "counts": planned.counts,
        "totals": totals(planned.plan),
    }


@contextmanager
def without_heartbeats() -> Iterator[None]:
    """Flow runs started in this block (and in threads given a copy of its context) send no flow-run heartbeats.

    For runs a process runs in-process for a caller that watches them itself: `provision sync` (a person at a
    terminal) and a backfill's tenants (subflows of the backfill's own flow run, which keeps its heartbeat: the
    process that runs them is its). Prefect's engine starts a heartbeat thread for every flow run and joins it at
    the run's end, and that thread sleeps in one-second steps: a run lasted until a whole second after its start,
    its thread idle meanwhile (a 0.35 s tenant run took 1.1 s; bench/README.md, "Many tenants"), and every run
    also sent one more event for the server to store. Heartbeats serve one thing, an automation that marks a run
    whose heartbeats stop as crashed: the product sets up none (its alert automation, deployments/alerts.py,
    matches its own events), and a run whose process died is found by its run row (`abandoned`, store/repo.py).
    Runs that a worker starts (deployments, schedules) keep their heartbeats.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def give_memory_back() -> None:
    """Hand the C heap's free pages back to the operating system when a run ends, so that a long-lived worker
    does not sit on the peak of its largest run (bench/README.md, "Memory").

    glibc returns freed memory only from the top of its heap; `malloc_trim(0)` returns every free page (1-7 ms
    after a 300k-user run). Where the C library has no such call (musl, macOS) this does nothing. Polars'
    allocator returns its own freed pages at once (settings/allocator.py). Prefect 3.9 holds each stage task's
    result until the flow run ends (the task's transaction keeps it, persist_result=False or not) and lets go of
    them as the flow run ends: the pages they free then are trimmed by the next run's end. Not done: a full
    `gc.collect()` here, which found only a few hundred of Prefect's and httpx's objects in reference cycles (no
    frame of a run among them) and took 0.3-0.5 s per run; the collector's own schedule frees those.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none."""
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # no C library to load, or one without malloc_trim (musl)
        return None
    function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
    trim: Callable[[int], int] = function
    return trim


def _publish_quietly(tenant: str, markdown: str) -> None:
    """The failure's artifact, unless the orchestrator cannot take it: the run row has said it already."""
    try:
        publish(tenant, {}, markdown)
    except Exception as exc:  # the failure that is being reported matters more than its artifact
        get_run_logger().warning("the failure's artifact was not published: %s", describe(exc))


def _report(engine: Engine, tenant: str, run_id: str, planned: PlannedRun, outcome: str, dry_run: bool) -> None:
    """Record the run's outcome and counts in its row, and publish its artifacts."""
    note = f"Stopped before loading: {planned.stop_reason}. Nothing was changed." if planned.stop_reason else None
    if dry_run and not planned.stop_reason:
        note = "Dry run: nothing was written to the employee table."
    finish_run(engine, run_id, outcome=outcome, counts=planned.counts, error=planned.stop_reason)
    markdown = summary_markdown(
        tenant=tenant,
        outcome=outcome,
        counts=planned.counts,
        quarantine=planned.quarantine,
        plan=planned.plan,
        missing_groups=planned.missing_groups,
        note=note,
    )
    report_task(tenant, planned.counts, markdown)
