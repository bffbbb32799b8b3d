"""Backfills: one sync-tenant run per tenant (all syncable tenants, or a given list), a few at a time.

Each tenant's run is its own flow run, named `backfill-<tenant>`, with trigger `backfill`. Locally (and
by default) they run as subflows in this process on a bounded thread pool, `max_concurrent` at once, without
heartbeats of their own (flows/sync_tenant.py `without_heartbeats` says why); with
`deployment` set (as prefect.yaml does: `sync-tenant/sync-tenant`) each is started through that deployment,
so workers of the pool share them out. One tenant's failure never stops the others; the result (and a
markdown artifact `sync-all`) lists every tenant's outcome.

A tenant is not lost to a transient failure of the Prefect API (a 5xx, a 409, a dropped or refused
connection) while its run is being created or started: its start is tried again, up to 3 times in all, after
about 5 s and 20 s (jittered, so the threads do not come back at once). Prefect's client has by then already
retried a 429, 502 or 503 and a dropped connection itself, for up to a minute per request, so a tenant waits at
most about 3.5 minutes for an API that stays down. Once its run row exists the run is not started again (that
would be a second run); it ends with what its row says. What still fails is said with its real cause (the
status, the request and the API's own words, or the connection error), and its traceback is logged in this
backfill's flow run, the log the message names.
"""

from __future__ import annotations

import contextvars
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from sqlalchemy import Engine, Row, select

from domain.errors import ExplainedError, describe
from flows.sync_tenant import sync_tenant, without_heartbeats
from store.db import make_engine
from store.locks import TenantBusyError
from store.models import Run, utcnow
from store.schedules import syncable_tenants
from tasks.validate import GuardTripped

# Seconds before the 2nd and 3rd try of a tenant's start after a transient Prefect API failure (each jittered
# to 50-100% of it). Tests set them to zero.
START_RETRY_DELAYS: tuple[float, ...] = (5.0, 20.0)

# Answers of the Prefect API worth another try: a timeout, a conflict (409: what a request raced with may be
# gone the next time), rate limiting and server-side failures.
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def outcome_of_error(exc: BaseException) -> str:
    if isinstance(exc, GuardTripped):
        return "stopped_by_guard"
    if isinstance(exc, TenantBusyError):
        return "refused"
    return "failed"


def prefect_api_error(exc: BaseException) -> str | None:
    """What went wrong talking to the Prefect API, naming the real cause (the status, the request and the API's
    own words; or the connection error), or None when `exc` is not such a failure."""
    if isinstance(exc, httpx.HTTPStatusError):
        response, request = exc.response, exc.request
        said = _said(response)
        return (
            f"the Prefect API answered {response.status_code} {response.reason_phrase} to {request.method} "
            f"{request.url.path}" + (f" ({said})" if said else "")
        )
    if isinstance(exc, httpx.TransportError):
        try:
            where = f" at {exc.request.url.host}:{exc.request.url.port}"
        except RuntimeError:  # an error raised before a request was made has none
            where = ""
        return f"{type(exc).__name__} talking to the Prefect API{where}: {exc or 'no detail'}"
    if isinstance(exc, ConnectionError):  # reset, refused, aborted below httpx
        return f"{type(exc).__name__} talking to the Prefect API: {exc.strerror or exc}"
    return None


def _said(response: httpx.Response) -> str:
    """The API's own short reason for an error answer (Prefect puts it in `detail` or `exception_message`)."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200]
    if isinstance(body, dict):
        body = body.get("detail") or body.get("exception_message") or body
    return " ".join(str(body).split())[:200]


def is_transient(exc: BaseException) -> bool:
    """A failure of the Prefect API that may well not happen again in a few seconds."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in TRANSIENT_STATUSES
    return isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, ConnectionError))


def _backfill_run_since(engine: Engine, tenant: str, since: datetime) -> Row[str, str] | None:
    """The id and outcome of the tenant's backfill run started at `since` or later: whether its run got as far
    as starting."""
    with engine.connect() as conn:
        return conn.execute(
            select(Run.id, Run.outcome)
            .where(Run.tenant_id == tenant, Run.trigger == "backfill", Run.started_at >= since)
            .order_by(Run.started_at.desc())
            .limit(1)
        ).first()


def _retrying(tenant: str, attempt: int, cause: str) -> bool:
    """Log the retry and wait before it; False when the attempts are spent."""
    if attempt > len(START_RETRY_DELAYS):
        return False
    delay = START_RETRY_DELAYS[attempt - 1] * random.uniform(0.5, 1.0)
    get_run_logger().warning(
        "Tenant %s: %s while starting its run; trying again in %.0f s (attempt %d of %d).",
        tenant,
        cause,
        delay,
        attempt + 1,
        len(START_RETRY_DELAYS) + 1,
    )
    time.sleep(delay)
    return True


def _not_synced(tenant: str, exc: Exception, run: Row[str, str] | None, attempts: int) -> dict[str, Any]:
    """A tenant whose run failed: its own sentence, or the real cause with the traceback in this backfill's log."""
    found: dict[str, Any] = {"run_id": run.id} if run is not None else {}
    if isinstance(exc, ExplainedError):  # the tenant's own failure (source, guard, lock), said in its run row
        return {"outcome": outcome_of_error(exc), "error": describe(exc), **found}
    from prefect.runtime import flow_run

    cause = prefect_api_error(exc) or f"unexpected {type(exc).__name__}"
    get_run_logger().error("Tenant %s: %s", tenant, cause, exc_info=exc)
    if run is not None and run.outcome not in ("queued", "running"):
        # The run did its work and recorded it in its row; only Prefect's record of the run failed afterwards.
        return {"outcome": run.outcome, **found, "note": f"{cause} after the run had ended"}
    tried = f" ({attempts} attempts)" if attempts > 1 else ""
    when = "before its run started" if run is None else "during its run"
    return {
        "outcome": "failed",
        "error": f"{cause}{tried} {when}; the traceback is in the log of flow run {flow_run.name}",
        **found,
    }


# The flow as a backfill runs it, made once: `with_options` builds a new flow, its parameter schema included
# (about 15 ms of CPU), and Prefect fills the run's name in from its parameters.
_backfill_tenant = sync_tenant.with_options(flow_run_name="backfill-{tenant}")


def _run_in_process(tenant: str, dry_run: bool) -> dict[str, Any]:
    engine = make_engine()
    attempt = 1
    while True:
        since = utcnow()
        try:
            result = _backfill_tenant(tenant, dry_run=dry_run, trigger="backfill")
        except Exception as exc:
            run = _backfill_run_since(engine, tenant, since)
            cause = prefect_api_error(exc)
            if cause is not None and run is None and is_transient(exc) and _retrying(tenant, attempt, cause):
                attempt += 1
                continue
            return _not_synced(tenant, exc, run, attempt)
        return {"outcome": result["outcome"], "run_id": result["run_id"], "counts": result["counts"]}


def _run_through_deployment(deployment: str, tenant: str, dry_run: bool) -> dict[str, Any]:
    from prefect.deployments import run_deployment
    from prefect.runtime import flow_run as backfill

    attempt = 1
    while True:
        try:
            flow_run = run_deployment(
                deployment,
                parameters={"tenant": tenant, "dry_run": dry_run, "trigger": "backfill"},
                flow_run_name=f"backfill-{tenant}",
                # A retry finds the flow run an earlier try created rather than creating a second one.
                idempotency_key=f"{backfill.id}-{tenant}",
                timeout=None,  # wait for it: the backfill's result is every tenant's outcome
                poll_interval=1,
            )
        except Exception as exc:
            cause = prefect_api_error(exc)
            if cause is not None and is_transient(exc) and _retrying(tenant, attempt, cause):
                attempt += 1
                continue
            return _not_synced(tenant, exc, None, attempt)
        break
    state, flow_run_id = flow_run.state, str(flow_run.id)  # type: ignore[union-attr]
    found: dict[str, Any] = {"flow_run_id": flow_run_id, "state": state.name if state else None}
    with make_engine().connect() as conn:  # the run row says how it ended (stopped by the guard, refused, ...)
        row = conn.execute(select(Run.id, Run.outcome, Run.error).where(Run.flow_run_id == flow_run_id)).first()
    if row is not None:
        return {"outcome": row.outcome, "run_id": row.id, **({"error": row.error} if row.error else {}), **found}
    return {"outcome": "succeeded" if state is not None and state.is_completed() else "failed", **found}


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

    with (
        without_heartbeats(),  # for the tenants' runs in this process: this run's heartbeat speaks for them
        ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="backfill") as pool,
    ):
        # Each thread gets a copy of this flow run's context, so the tenants' runs are its subflows.
        futures = {t: pool.submit(contextvars.copy_context().run, one, t) for t in chosen}
        results = {t: f.result() for t, f in futures.items()}

    lines = ["# Backfill" + (" (dry run)" if dry_run else ""), "", "| tenant | outcome | detail |", "|---|---|---|"]
    for tenant, r in results.items():
        detail = r.get("error") or r.get("run_id") or r.get("flow_run_id", "")
        lines.append(f"| {tenant} | {r['outcome']} | {detail}{'; ' + r['note'] if r.get('note') else ''} |")
    create_markdown_artifact(key="sync-all", markdown="\n".join(lines), description="Backfill outcome per tenant")
    failed = [t for t, r in results.items() if r["outcome"] != "succeeded"]
    if failed:
        logger.warning("Not succeeded: %s", ", ".join(failed))
    return results
