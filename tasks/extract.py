"""Extract every user and group of a tenant's source, normalized at the edge into polars frames."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from settings import unified_token
from sources.model import SourceSnapshot
from sources.normalize import normalize
from sources.unified import UnifiedClient
from store.models import Integration


@dataclass(frozen=True)
class SourceConfig:
    """Where a tenant's users come from: no secret in here (the token is looked up in the task)."""

    tenant: str
    source: str
    provider: str
    connection_id: str
    base_url: str


def source_config(integration: Integration) -> SourceConfig:
    return SourceConfig(
        tenant=integration.tenant_id,
        source=integration.source,
        provider=integration.provider,
        connection_id=integration.connection_id,
        base_url=integration.base_url,
    )


def extract(config: SourceConfig) -> SourceSnapshot:
    if config.source != "unified":
        raise ValueError(f"tenant {config.tenant}: unknown source {config.source!r}")
    with UnifiedClient(
        base_url=config.base_url, token=unified_token(), connection_id=config.connection_id, tenant=config.tenant
    ) as client:
        employees = client.list_employees()
        groups = client.list_groups()
    return normalize(employees, groups)


# The client retries each request itself; a task-level retry would multiply its waits, so the
# task is not retried here (issue: task retries on transient errors only, bounded together).
@task(name="extract users and groups", cache_policy=NO_CACHE, persist_result=False)
def extract_task(config: SourceConfig) -> SourceSnapshot:
    return extract(config)
