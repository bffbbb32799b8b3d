"""The daily retention flow (prefect.yaml deploys it; `provision retention run` starts it by hand): every tenant's
run history loses its names and emails once older than the tenant's retention period (store/retention.py).

It reports the rows scrubbed per tenant in its return value, its log and a table artifact keyed `retention`:
counts and tenant ids only.
"""

from __future__ import annotations

import settings.allocator  # noqa: F401  (first: polars reads its allocator's settings as it loads)

# isort: split

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import make_engine
from store.models import Tenant
from store.repo import get_tenant
from store.retention import BATCH_ROWS
from tasks.retention import retention_task


@flow(name="retention", flow_run_name="retention")
def retention(tenants: list[str] | None = None, dry_run: bool = False, batch_rows: int = BATCH_ROWS) -> dict[str, Any]:
    """Scrub every tenant's expired run history (or the given tenants'); `dry_run` counts and writes nothing.
    Returns {tenant: {rows, runs, batches, longest_batch_seconds, cutoff}}."""
    engine = make_engine()
    with Session(engine) as session:
        if tenants:
            for tenant in tenants:  # every named tenant exists, before any is scrubbed
                get_tenant(session, tenant)
            names = list(dict.fromkeys(tenants))
        else:
            names = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
    logger = get_run_logger()
    results: dict[str, Any] = {}
    for tenant in names:
        done = retention_task(tenant, dry_run, batch_rows)
        results[tenant] = done
        verb = "would scrub" if dry_run else "scrubbed"
        logger.info(
            f"{tenant}: {verb} {done['rows']} run change rows of {done['runs']} runs started before {done['cutoff']}"
            + ("" if dry_run else f" in {done['batches']} batches (longest {done['longest_batch_seconds']} s)")
        )
    create_table_artifact(
        key="retention",
        table=[{"tenant": t, **{k: v for k, v in r.items() if k != "tenant"}} for t, r in results.items()],
        description="Run history scrubbed of names and emails past each tenant's retention period"
        + (" (dry run: nothing written)" if dry_run else ""),
    )
    return results
