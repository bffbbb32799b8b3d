"""Backfills: one sync-tenant run per tenant (all syncable tenants, or a given list), a few at a time.

Each tenant's run is its own flow run, named `backfill-<tenant>`, with trigger `backfill`. Locally (and
by default) they run as subflows in this process on a bounded thread pool; with `deployment` set (as
prefect.yaml does: `sync-tenant/sync-tenant`) each is started through that deployment, so workers of
the pool share them out. One tenant's failure never stops the others; the result (and a markdown
artifact `sync-all`) lists every tenant's outcome.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from domain.errors import describe
from flows.sync_tenant import sync_tenant
from store.db import make_engine
from store.locks import TenantBusyError
from store.schedules import syncable_tenants
from tasks.validate import GuardTripped


def outcome_of_error(exc: BaseException) -> str:
    if isinstance(exc, GuardTripped):
        return "stopped_by_guard"
    if isinstance(exc, TenantBusyError):
        return "refused"
    return "failed"


def _run_in_process(tenant: str, dry_run: bool) -> dict[str, Any]:
    try:
        result = sync_tenant.with_options(flow_run_name=f"backfill-{tenant}")(
            tenant, dry_run=dry_run, trigger="backfill"
        )
    except Exception as exc:
        return {"outcome": outcome_of_error(exc), "error": describe(exc)}
    return {"outcome": result["outcome"], "run_id": result["run_id"], "counts": result["counts"]}


def _run_through_deployment(deployment: str, tenant: str, dry_run: bool) -> dict[str, Any]:
    from prefect.deployments import run_deployment

    try:
        flow_run = run_deployment(
            deployment,
            parameters={"tenant": tenant, "dry_run": dry_run, "trigger": "backfill"},
            flow_run_name=f"backfill-{tenant}",
            timeout=None,  # wait for it: the backfill's result is every tenant's outcome
        )
    except Exception as exc:
        return {"outcome": "failed", "error": f"could not start the run ({type(exc).__name__})"}
    state = flow_run.state  # type: ignore[union-attr]
    outcome = "succeeded" if state is not None and state.is_completed() else "failed"
    return {"outcome": outcome, "flow_run_id": str(flow_run.id), "state": state.name if state else None}  # type: ignore[union-attr]


def run_name() -> str:
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    scope = ",".join(parameters.get("tenants") or []) or "all"
    return f"backfill-{scope}" + ("-dry-run" if parameters.get("dry_run") else "")


@flow(name="sync-all", flow_run_name=run_name)
def sync_all(
    tenants: list[str] | None = None,
    dry_run: bool = False,
    max_concurrent: int = 4,
    deployment: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Start one sync-tenant run per tenant (default: every tenant with an active, configured integration).

    Returns {tenant: {outcome, run_id or flow_run_id, counts or error}}. `max_concurrent` bounds how
    many run at once; `deployment` (e.g. `sync-tenant/sync-tenant`) runs each through that deployment.
    """
    if max_concurrent < 1:
        raise ValueError("max_concurrent must be at least 1")
    chosen = list(dict.fromkeys(tenants)) if tenants else syncable_tenants(make_engine())
    logger = get_run_logger()
    logger.info(
        "Backfill of %d tenant(s)%s, %d at a time", len(chosen), " (dry run)" if dry_run else "", max_concurrent
    )

    def one(tenant: str) -> dict[str, Any]:
        if deployment:
            return _run_through_deployment(deployment, tenant, dry_run)
        return _run_in_process(tenant, dry_run)

    with ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="backfill") as pool:
        # Each thread gets a copy of this flow run's context, so the tenants' runs are its subflows.
        futures = {t: pool.submit(contextvars.copy_context().run, one, t) for t in chosen}
        results = {t: f.result() for t, f in futures.items()}

    lines = ["# Backfill" + (" (dry run)" if dry_run else ""), "", "| tenant | outcome | detail |", "|---|---|---|"]
    for tenant, r in results.items():
        lines.append(f"| {tenant} | {r['outcome']} | {r.get('error') or r.get('run_id') or r.get('flow_run_id', '')} |")
    create_markdown_artifact(key="sync-all", markdown="\n".join(lines), description="Backfill outcome per tenant")
    failed = [t for t, r in results.items() if r["outcome"] != "succeeded"]
    if failed:
        logger.warning("Not succeeded: %s", ", ".join(failed))
    return results
