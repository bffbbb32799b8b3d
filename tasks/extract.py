"""Extract every user and group of a tenant's source, normalized at the edge into polars frames (each page
read into columns as it arrives: `sources.normalize`).

Three retry layers, one per concern, bounded together (conventions: errors are sorted before they are
retried, and the arithmetic is done so the layers don't multiply unnoticed):

- the client retries one request (`sources.http`) up to CLIENT_ATTEMPTS times, sleeping at most
  REQUEST_SLEEP_SECONDS = (CLIENT_ATTEMPTS - 1) * CLIENT_BACKOFF_MAX = 30 s in between (a `Retry-After`
  is capped at CLIENT_BACKOFF_MAX too); each attempt is bounded by the connect + read timeouts. So one
  request gives up after at most REQUEST_SECONDS = CLIENT_ATTEMPTS * (connect + read) +
  REQUEST_SLEEP_SECONDS = 4 * 40 + 30 = 190 s.
- the client reads a listing again (`sources.paging`), up to CLIENT_READS reads in all, when a read
  came back inconsistent (stopped at an id repeated across pages, totals that disagree, records
  missing). A re-read follows only a read whose every request succeeded: a request that still fails
  after its attempts fails the listing at once. So re-reads multiply the requests made for each page,
  not the attempts of a request that never succeeds. (A read stopped by a repeat of the page just before,
  what drift looks like, asks for nothing more; only a repeat from further back is checked at once, at
  most one request per page of the other page size and read: the bounds below assume drift.)
- the task re-runs the whole extract only on `TransientSourceError` (the client's retries are spent:
  an outage, not a blip; or reads that never agreed, InconsistentListingError), TASK_RETRIES times with
  TASK_RETRY_DELAYS between; permanent errors (401, 403, 404, 400, malformed payloads, reads that agree
  on missing records, a missing token) fail at once.

What multiplies, per page of a listing, over the whole extract (TASK_RUNS = TASK_RETRIES + 1 = 3):

- a request that never succeeds (a source that is down) is tried FAILING_REQUEST_ATTEMPTS =
  TASK_RUNS * CLIENT_ATTEMPTS = 12 times, and the run fails after at most FAILING_REQUEST_SECONDS =
  TASK_RUNS * REQUEST_SECONDS + sum(TASK_RETRY_DELAYS) = 3 * 190 + 150 = 720 s;
- the worst case is a page whose every request succeeds only on its last attempt, in a listing whose
  reads never agree: PAGE_ATTEMPTS = TASK_RUNS * CLIENT_READS * CLIENT_ATTEMPTS = 3 * 3 * 4 = 36
  attempts, over at most MAX_PAGE_SECONDS = TASK_RUNS * CLIENT_READS * REQUEST_SECONDS +
  sum(TASK_RETRY_DELAYS) = 3 * 3 * 190 + 150 = 1860 s (31 minutes): inside the shortest sensible
  schedule interval (an hour).

Those bound one page. A listing's pages go up to `concurrency` at a time, those in flight sharing one
pause gate (a request may also wait out the others' sleeps); pages that follow one another (page 0,
the probe pages, the employees then the groups) add their seconds up. The read timeout is between
bytes: a server trickling a body slower than that is not covered by these bounds (httpx has no total
timeout), the worker's own limits are.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import httpx
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from pydantic import SecretStr

from settings import get_settings, unified_token
from sources.errors import SourceNotSupportedError, TransientSourceError
from sources.hosts import checked_base_url
from sources.model import GROUPS_EMBEDDED_ONLY, GROUPS_LISTED, SourceSnapshot
from sources.normalize import group_block, read_group_page, read_user_page, user_block
from sources.normalize import normalize_blocks as normalize  # the name tests/test_retries.py spies on
from sources.unified import UnifiedClient
from store.models import Integration

CLIENT_ATTEMPTS = 4
CLIENT_BACKOFF_BASE = 0.5
CLIENT_BACKOFF_MAX = 10.0
CLIENT_CONNECT_TIMEOUT = 10.0
CLIENT_READ_TIMEOUT = 30.0
CLIENT_TIMEOUT = httpx.Timeout(CLIENT_READ_TIMEOUT, connect=CLIENT_CONNECT_TIMEOUT)
CLIENT_READS = 3
TASK_RETRIES = 2
TASK_RETRY_DELAYS: list[float] = [30, 120]

TASK_RUNS = TASK_RETRIES + 1
REQUEST_SLEEP_SECONDS = (CLIENT_ATTEMPTS - 1) * CLIENT_BACKOFF_MAX
REQUEST_SECONDS = CLIENT_ATTEMPTS * (CLIENT_CONNECT_TIMEOUT + CLIENT_READ_TIMEOUT) + REQUEST_SLEEP_SECONDS
FAILING_REQUEST_ATTEMPTS = TASK_RUNS * CLIENT_ATTEMPTS
FAILING_REQUEST_SECONDS = TASK_RUNS * REQUEST_SECONDS + sum(TASK_RETRY_DELAYS)
PAGE_ATTEMPTS = TASK_RUNS * CLIENT_READS * CLIENT_ATTEMPTS
MAX_PAGE_SECONDS = TASK_RUNS * CLIENT_READS * REQUEST_SECONDS + sum(TASK_RETRY_DELAYS)


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


def unified_client(
    config: SourceConfig, token: SecretStr, *, sleep: Callable[[float], None] = time.sleep
) -> UnifiedClient:
    """The client as every extract builds it, with the retry budget of this module's docstring.

    `sleep` is the client's backoff sleep, for a test to record instead of waiting.
    """
    return UnifiedClient(
        base_url=config.base_url,
        token=token,
        connection_id=config.connection_id,
        tenant=config.tenant,
        timeout=CLIENT_TIMEOUT,
        max_attempts=CLIENT_ATTEMPTS,
        backoff_base=CLIENT_BACKOFF_BASE,
        backoff_max=CLIENT_BACKOFF_MAX,
        max_reads=CLIENT_READS,
        sleep=sleep,
        max_response_bytes=get_settings().max_response_bytes,
    )


# Generation 0's threshold while an extract runs, instead of CPython's 700. Measured on 100k users from
# the simulator (2 cores, Python 3.11), the collector's time per extract: 0.56 s at 700, 0.29 s at 2,000,
# 0.13 s at 5,000, 10,000 and 20,000 alike, and 0.14 s with the collector switched off. That was while the
# extract held every decoded record; since it keeps only each page's columns (issue 16), the extract at 100k
# takes as long at 700 as at 10,000 (2.5-3.0 s both, six runs each): the threshold now costs and saves little.
EXTRACT_GC_THRESHOLD = 10_000

_gc_lock = threading.Lock()
_gc_batches = 0
_gc_threshold_before = gc.get_threshold()


@contextmanager
def gc_batched() -> Iterator[None]:
    """Collect reference cycles in batches of EXTRACT_GC_THRESHOLD allocations while an extract runs.

    Decoding 100k records allocates a few million dicts, lists and strings, none in a reference cycle: at
    CPython's threshold every 700 of them start a collection, and whatever the extract keeps is walked again
    and again as it piles up (a fifth of the extract's CPU time at 100k while it kept the decoded records;
    little now that it keeps each page's columns only).

    Safe for the other threads of the process (sync-all runs tenants on threads), although the
    threshold is process-wide: the collector is never switched off. Reference counting frees what it
    always frees; cyclic garbage made by any thread meanwhile is found by the same collections as
    ever, only 10,000 allocations apart instead of 700, never postponed until the extract ends (as
    switching the collector off, which this replaced, did: for as long as any extract in the process
    ran, backoff sleeps included). Re-entrant across threads: the first extract to start raises the
    threshold, the last to end restores the one it found. A threshold already higher is kept, and 0
    (automatic collection off) stays 0.
    """
    global _gc_batches, _gc_threshold_before
    with _gc_lock:
        if _gc_batches == 0:
            _gc_threshold_before = before = gc.get_threshold()
            if 0 < before[0] < EXTRACT_GC_THRESHOLD:
                gc.set_threshold(EXTRACT_GC_THRESHOLD, *before[1:])
        _gc_batches += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_batches -= 1
            if _gc_batches == 0:
                gc.set_threshold(*_gc_threshold_before)


def extract(config: SourceConfig) -> SourceSnapshot:
    if config.source != "unified":
        raise ValueError(f"tenant {config.tenant}: unknown source {config.source!r}")
    checked_base_url(config.base_url, tenant=config.tenant, allowed_hosts=get_settings().allowed_hosts())
    with gc_batched(), unified_client(config, unified_token()) as client:
        # Each page is read into columns as it arrives and its raw records dropped: a tenant's whole listing
        # of decoded JSON is never held (0.7 GB at 300k users; their columns in frames take 0.11 GB).
        employees = client.employee_pages(read_user_page, user_block)
        try:
            groups, group_source = client.group_pages(read_group_page, group_block), GROUPS_LISTED
        except SourceNotSupportedError:  # Personio: the groups are those named in the employees' groups[]
            groups, group_source = [], GROUPS_EMBEDDED_ONLY
        snapshot = normalize(employees, groups, group_source=group_source)
        return replace(snapshot, requests=client.requests_sent)


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
