"""Load and flag: apply the checked plan in one transaction (store/load.py does the SQL)."""

from __future__ import annotations

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from store.db import make_engine
from store.load import apply_plan


def load(
    tenant: str, run_id: str, plan: pl.DataFrame, quarantine: pl.DataFrame, memberships: pl.DataFrame, dry_run: bool
) -> int:
    """The load stage: the rows written (a dry run writes none). The engine is looked up here, by URL."""
    return apply_plan(
        make_engine(),
        tenant_id=tenant,
        run_id=run_id,
        plan=plan,
        quarantine=quarantine,
        memberships=memberships,
        dry_run=dry_run,
    )


# Not retried: the load is one transaction, so a failure leaves nothing half-written, and a blind
# retry of a write is the engineer's call (re-run the flow), not the orchestrator's.
load_task = task(name="load and flag", cache_policy=NO_CACHE, persist_result=False)(load)
