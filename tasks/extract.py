"""Extract every user and group of a tenant's source, normalized at the edge into polars frames.

Two retry layers, one per concern, bounded together (conventions: errors are sorted before they are
retried, and the arithmetic is done so the layers don't multiply unnoticed):

- the client retries one request up to CLIENT_ATTEMPTS times, sleeping at most
  `UnifiedClient.max_retry_wait()` = (CLIENT_ATTEMPTS - 1) * CLIENT_BACKOFF_MAX seconds in between (a
  `Retry-After` is capped at that too); each attempt is bounded by the connect + read timeouts. So one
  request gives up after at most REQUEST_SECONDS = CLIENT_ATTEMPTS * (connect + read) + max_retry_wait.
- the task re-runs the whole extract only on `TransientSourceError` (the client's retries are spent:
  an outage, not a blip), TASK_RETRIES times with TASK_RETRY_DELAYS between; permanent errors (401,
  403, 404, 400, malformed payloads, a missing token) fail at once.

A request that never succeeds is therefore tried (TASK_RETRIES + 1) * CLIENT_ATTEMPTS = 12 times, and
the run gives up on it after at most MAX_EXTRACT_SECONDS = (TASK_RETRIES + 1) * REQUEST_SECONDS +
sum(TASK_RETRY_DELAYS) = 3 * 190 + 150 = 720 s: well inside the shortest sensible schedule interval
(an hour). The read timeout is between bytes: a server trickling a body slower than that is not
covered by this bound (httpx has no total timeout), the worker's own limits are.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from pydantic import SecretStr

from settings import unified_token
from sources.errors import TransientSourceError
from sources.model import SourceSnapshot
from sources.normalize import normalize
from sources.unified import UnifiedClient
from store.models import Integration

CLIENT_ATTEMPTS = 4
CLIENT_BACKOFF_BASE = 0.5
CLIENT_BACKOFF_MAX = 10.0
CLIENT_CONNECT_TIMEOUT = 10.0
CLIENT_READ_TIMEOUT = 30.0
CLIENT_TIMEOUT = httpx.Timeout(CLIENT_READ_TIMEOUT, connect=CLIENT_CONNECT_TIMEOUT)
TASK_RETRIES = 2
TASK_RETRY_DELAYS: list[float] = [30, 120]

REQUEST_SECONDS = (
    CLIENT_ATTEMPTS * (CLIENT_CONNECT_TIMEOUT + CLIENT_READ_TIMEOUT) + (CLIENT_ATTEMPTS - 1) * CLIENT_BACKOFF_MAX
)
MAX_EXTRACT_SECONDS = (TASK_RETRIES + 1) * REQUEST_SECONDS + sum(TASK_RETRY_DELAYS)


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


def unified_client(config: SourceConfig, token: SecretStr) -> UnifiedClient:
    """The client as every extract builds it, with the retry budget of this module's docstring."""
    return UnifiedClient(
        base_url=config.base_url,
        token=token,
        connection_id=config.connection_id,
        tenant=config.tenant,
        timeout=CLIENT_TIMEOUT,
        max_attempts=CLIENT_ATTEMPTS,
        backoff_base=CLIENT_BACKOFF_BASE,
        backoff_max=CLIENT_BACKOFF_MAX,
    )


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector off while raw records pile up (re-entrant across threads).

    Decoding 100k records allocates a few million dicts, lists and strings, none in a reference cycle;
    every allocation burst would otherwise start a collection that walks all of them again: a third
    of the client's CPU time at 100k. Reference counting still frees everything as usual; the
    collector runs again once the last extract in this process is done.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def extract(config: SourceConfig) -> SourceSnapshot:
    if config.source != "unified":
        raise ValueError(f"tenant {config.tenant}: unknown source {config.source!r}")
    with gc_paused(), unified_client(config, unified_token()) as client:
        employees = client.list_employees()
        groups = client.list_groups()
        return normalize(employees, groups)


def only_transient(task: Task[..., object], task_run: TaskRun, state: State) -> bool:
    """Retry the task only when the source failed transiently after the client's own retries."""
    try:
        state.result()
    except TransientSourceError:
        return True
    except Exception:
        return False
    return False


@task(
    name="extract users and groups",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=TASK_RETRIES,
    retry_delay_seconds=TASK_RETRY_DELAYS,
    retry_condition_fn=only_transient,
)
def extract_task(config: SourceConfig) -> SourceSnapshot:
    return extract(config)
