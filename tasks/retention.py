"""The retention pass of one tenant (store/retention.py does the work): a plain function and its task, which the
retention flow (flows/retention.py) runs once per tenant. It returns counts only, never a name or an email."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from store.db import make_engine
from store.retention import BATCH_ROWS, scrub_expired


def scrub_tenant(tenant: str, dry_run: bool = False, batch_rows: int = BATCH_ROWS) -> dict[str, Any]:
    """Scrub the tenant's run history past its retention period; what it did (or would do) as counts."""
    return scrub_expired(make_engine(), tenant, dry_run=dry_run, batch_rows=batch_rows).as_dict()


# Not retried: a pass stopped half-way is taken up by the next one, which plans only what is still due.
retention_task = task(name="scrub expired run history", cache_policy=NO_CACHE, persist_result=False)(scrub_tenant)
