"""A plain (Prefect-free) client for the Unified.to HRIS API: employees and groups of one connection.

One `_request()` sorts every outcome into a typed error (sources/errors.py) and retries only the
transient ones; `iter_pages()` pages with `limit`/`offset` until a short page. Payloads are returned
raw; `sources.normalize` turns them into the frames of `sources.model`.

Concurrent paging: offsets are known in advance (page k is at `k * limit`), so up to `concurrency` pages
can be in flight at once on a thread pool over the one (thread-safe) httpx.Client. The first PROBE_PAGES
pages go one at a time, timed: a page's wall time over the client's own CPU time for it says how many
requests it takes to keep the client busy (Little's law), and that, capped at `concurrency`, is the
window for the rest. A source that answers in microseconds (the simulator next door) is then read one
page at a time, because threads contending for the GIL would only cost CPU; a source 30 ms away gets
the whole window. Page 0's X-Total-Count says how many more pages to ask for (without one, `window`
pages at a time). Pages are kept in order; the first short page ends the listing and pages requested
beyond it are discarded (they must be empty). Read one at a time without a total, one page beyond a short
page other than the first is still asked for, so a short page in the middle is caught as it is by
concurrent reads. A 429 or 5xx pauses every worker, not just the one that got it: the worker that was
told to wait holds a shared gate while it sleeps, and every request first passes that gate.

Bodies are decoded with orjson (several times faster than the json module on 100-record pages); what it
refuses (lone surrogates, NaN, UTF-16) is decoded by the json module instead, so what counts as JSON is
unchanged. (orjson reads integers beyond 64 bits as floats; no field the normalizer keeps is a number.)

Consistent listings: a listing is read again (at most `max_reads` times in all) when an id repeats
across pages, when pages disagree on `X-Total-Count`, when fewer records arrive than it announced, or
when records turn up beyond the page that ended it; every other read uses a page one record shorter, so
that a repeat caused by where pages break moves. Two reads that agree exactly are the source's truth:
repeated ids are then its own duplicates (quarantined downstream); still too few records is an
IncompleteListingError (permanent). Reads that never agree are an InconsistentListingError (transient).
A missed page must never reach matching, where it would flag its employees `non_matching`.

Retry budget: one request spends at most `max_retry_wait()` seconds asleep between its attempts
(`(max_attempts - 1) * backoff_max`, since a `Retry-After` is capped at `backoff_max` too), plus up to
`max_attempts` request timeouts. A task-level retry should be bounded against that, not multiply it.

The retry loop is hand-written rather than tenacity/stamina: it is a dozen lines, it must honour
`Retry-After` (seconds or an HTTP date) per response, and its sleep is injected so tests do not wait.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import orjson
from pydantic import SecretStr

from sources.errors import (
    IncompleteListingError,
    InconsistentListingError,
    MalformedPayloadError,
    PageLimitError,
    SourceAuthError,
    SourceNotFoundError,
    SourceRequestError,
    TransientSourceError,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
PAGE_SIZE = 100  # Unified's default and maximum page size
MAX_PAGES = 10_000  # 1M records: far beyond any tenant; hitting it means paging never ends
# Pages in flight at once. 8 x 100 records keeps a 30 ms-latency source ~8x faster than one page at a time
# while staying far below any documented rate limit; a 429 pauses all of them together.
DEFAULT_CONCURRENCY = 8
PROBE_PAGES = 3  # pages read one at a time, timed, before the window is chosen (page 0 is not timed)
MAX_READS = 3  # reads of one listing before an inconsistent source fails the run
USER_AGENT = "employee-provisioning/0.1 (+unified-hris-client)"
# Data minimisation starts at the request: ask only for what the normalizer keeps (it drops the rest
# anyway, for integrations that ignore `fields`). Comma-separated, as the Unified CLI sends it.
EMPLOYEE_FIELDS = "id,name,first_name,last_name,emails,employment_status,groups"
GROUP_FIELDS = "id,name,parent_id,user_ids"


def _retry_after_seconds(response: httpx.Response, now: Callable[[], float] = time.time) -> float | None:
    """`retry-after-ms`, or `Retry-After` as seconds (possibly fractional) or an HTTP date; else None."""
    ms = response.headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


class UnifiedClient:
    """Reads the employees and groups of one Unified.to connection on behalf of one tenant."""

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr,
        connection_id: str,
        tenant: str,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        rng: random.Random | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_reads: int = MAX_READS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if concurrency < 1 or max_reads < 1:
            raise ValueError("concurrency and max_reads must be at least 1")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {PAGE_SIZE}")
        self.tenant = tenant
        self.connection_id = connection_id
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.page_size = page_size
        self.max_pages = max_pages
        self.concurrency = concurrency
        self.max_reads = max_reads
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        # Held by a worker while it sleeps off a 429/5xx; every request passes it first (backing off together).
        self._pause = threading.Lock()
        self._prefix = f"/hris/{quote(connection_id, safe='')}"
        self._urls: dict[str, httpx.URL] = {}  # absolute URL per path, parsed once
        # The token is unwrapped here only, into a header httpx never puts into an exception message.
        self._http = httpx.Client(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"UnifiedClient(tenant={self.tenant!r}, connection_id={self.connection_id!r})"

    # -- retry arithmetic -----------------------------------------------------------------------

    def max_retry_wait(self) -> float:
        """Worst-case seconds one request sleeps between its attempts (excluding the attempts themselves)."""
        return (self.max_attempts - 1) * self.backoff_max

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(attempt-1))].
        with self._rng_lock:
            return self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _wait_for_pause(self) -> None:
        """Block while another worker sleeps off a 429 or 5xx."""
        with self._pause:
            pass

    def _pause_all(self, wait: float) -> None:
        """Sleep `wait` seconds holding the gate, so no worker sends a request meanwhile.

        A worker that finds the gate taken waits for it, then sleeps only what is left of its own wait:
        concurrent 429s pause the pool about once, not once each in a row.
        """
        deadline = self._clock() + wait
        if self._pause.acquire(blocking=False):
            try:
                self._sleep(wait)
            finally:
                self._pause.release()
            return
        with self._pause:
            left = deadline - self._clock()
            if left > 0:
                self._sleep(left)

    # -- one request ----------------------------------------------------------------------------

    def _url(self, path: str, params: dict[str, Any] | None) -> httpx.URL:
        """The absolute URL of `path` under the connection with `params` as httpx encodes them.

        Built here rather than by `client.get(path, params=...)`, which parses and merges three URLs per
        request: a third of the client's CPU time on a 1,000-page listing.
        """
        url = self._urls.get(path)
        if url is None:
            base = self._http.base_url  # httpx gives it a trailing slash, as its own merging does
            url = base.copy_with(raw_path=base.raw_path + (self._prefix + path).lstrip("/").encode("ascii"))
            self._urls[path] = url
        return url.copy_with(query=str(httpx.QueryParams(params)).encode()) if params else url

    def _where(self) -> str:
        return f"for connection {self.connection_id}"

    def _request(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET `path` under the connection, retrying transient failures; return the decoded JSON body."""
        return self._fetch(path, params)[0]

    def _fetch(self, path: str, params: dict[str, Any] | None = None) -> tuple[Any, int | None]:
        """The decoded JSON body and the `X-Total-Count` (None when absent or unreadable)."""
        url = self._url(path, params)
        cause = ""
        for attempt in range(1, self.max_attempts + 1):
            self._wait_for_pause()
            try:
                response = self._http.get(url)
            except httpx.TimeoutException as exc:
                cause = f"timed out ({type(exc).__name__})"
                wait = self._backoff(attempt)
            except httpx.TransportError as exc:
                cause = f"connection failed ({type(exc).__name__})"
                wait = self._backoff(attempt)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._decode(response, path), _total_count(response)
                if status == 429 or (status >= 500 and status != 501):
                    cause = "rate limited (429)" if status == 429 else f"server error ({status})"
                    retry_after = _retry_after_seconds(response)
                    wait = self._backoff(attempt) if retry_after is None else retry_after
                else:
                    self._raise_permanent(status, path)
            if attempt < self.max_attempts:
                self._pause_all(min(wait, self.backoff_max))
        raise TransientSourceError(
            f"Unified.to {path} {self._where()} still failing after {self.max_attempts} attempts: {cause}",
            tenant=self.tenant,
        )

    def _raise_permanent(self, status: int, path: str) -> None:
        where = self._where()
        if status in (401, 403):
            raise SourceAuthError(
                f"Unified.to refused the API token ({status}) {where}"
                + (": the connection may be paused or lack a permission" if status == 403 else ""),
                tenant=self.tenant,
                status=status,
            )
        if status == 404:
            raise SourceNotFoundError(
                f"Unified.to does not know {path} ({status}) {where}: wrong connection id?",
                tenant=self.tenant,
                status=status,
            )
        if status == 501:
            # 501 is how Unified says the integration does not support the object: no retry helps.
            raise SourceRequestError(
                f"the integration behind Unified.to does not support {path} ({status}) {where}",
                tenant=self.tenant,
                status=status,
            )
        raise SourceRequestError(
            f"Unified.to rejected the request for {path} ({status}) {where}",
            tenant=self.tenant,
            status=status,
        )

    def _decode(self, response: httpx.Response, path: str) -> Any:
        body = response.content
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(body)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise MalformedPayloadError(
                f"Unified.to answered {path} {self._where()} with a body that is not JSON",
                tenant=self.tenant,
                status=response.status_code,
            ) from None

    # -- paging ---------------------------------------------------------------------------------

    def _page(self, path: str, fields: str | None, index: int, size: int) -> tuple[list[Any], int | None]:
        params: dict[str, Any] = {"limit": size, "offset": index * size}
        if fields:
            params["fields"] = fields
        page, total = self._fetch(path, params)
        if not isinstance(page, list):
            raise MalformedPayloadError(
                f"Unified.to answered {path} {self._where()} with a JSON {type(page).__name__}, "
                "not the array it promises",
                tenant=self.tenant,
            )
        return page, total

    def _read_pages(self, path: str, fields: str | None, size: int) -> tuple[list[tuple[list[Any], int | None]], bool]:
        """One read of a listing: its pages in order up to the first short one, and whether any page
        fetched beyond that one held records (then the short page was not the end).

        Stop rule: page k is at offset k*limit; the first page shorter than `limit` is the last (so N*limit
        records end with an empty page). The first PROBE_PAGES pages are read one at a time and timed;
        then up to `window` pages are in flight (module docstring); pages beyond the last are discarded.
        More than `max_pages` pages raises PageLimitError rather than loop forever on a source that
        ignores `offset`.
        """
        read = _Read(size)
        next_index = 0
        window = 1
        timings: list[tuple[float, float]] = []  # (wall, CPU) seconds of the timed pages read one at a time
        # One at a time while probing, and for good when the window stays 1.
        while read.end is None and next_index < self.max_pages and (window == 1 or len(timings) < PROBE_PAGES):
            wall, cpu = time.perf_counter(), time.thread_time()
            read.arrived(next_index, self._page(path, fields, next_index, size))
            if next_index > 0:  # page 0 also pays for connecting
                timings.append((time.perf_counter() - wall, time.thread_time() - cpu))
            next_index += 1
            if len(timings) == PROBE_PAGES:
                window = self._window(timings)
        if read.end and read.hint is None and next_index == read.end + 1 < self.max_pages:
            # Without a total, a concurrent read would have asked past a short page in the middle: so do we.
            # (A short first page is taken as it is, as before: it is what the guard's empty-source rule is for.)
            read.arrived(next_index, self._page(path, fields, next_index, size))
            next_index += 1
        if read.end is None and next_index < self.max_pages:
            self._read_concurrently(path, fields, read, window, next_index)
        if read.end is None:
            raise PageLimitError(
                f"Unified.to {path} {self._where()} did not end within {self.max_pages} pages",
                tenant=self.tenant,
            )
        overflow = any(page for i, (page, _total) in read.pages.items() if i > read.end)
        return [read.pages[i] for i in range(read.end + 1)], overflow

    def _window(self, timings: list[tuple[float, float]]) -> int:
        """Pages to keep in flight: a page's wall time over the client's CPU time for it, within 1..concurrency."""
        wall = sum(w for w, _cpu in timings)
        cpu = max(sum(c for _wall, c in timings), 1e-6)
        return max(1, min(self.concurrency, int(wall / cpu)))

    def _read_concurrently(self, path: str, fields: str | None, read: _Read, window: int, next_index: int) -> None:
        """Read on from page `next_index` with up to `window` pages in flight, until a short page.

        With an X-Total-Count, exactly the pages it implies are requested; without one (or past it),
        `window` at a time.
        """
        hint = read.hint
        pool = ThreadPoolExecutor(max_workers=window, thread_name_prefix="unified-page")
        in_flight: dict[Future[tuple[list[Any], int | None]], int] = {}
        try:
            while True:
                while (
                    len(in_flight) < window
                    and read.end is None
                    and next_index < self.max_pages
                    and (hint is None or next_index <= hint)
                ):
                    in_flight[pool.submit(self._page, path, fields, next_index, read.size)] = next_index
                    next_index += 1
                if not in_flight:
                    if read.end is None and next_index < self.max_pages:
                        hint = None  # the announced pages were all full: read on until a short page
                        continue
                    return
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    # a failed page fails the read (the rest is cancelled)
                    read.arrived(in_flight.pop(future), future.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def iter_pages(self, path: str, *, fields: str | None = None) -> Iterator[list[Any]]:
        """Yield the pages of one read of a list endpoint, in order (see `_read_pages`; no consistency check)."""
        for page, _total in self._read_pages(path, fields, self.page_size)[0]:
            yield page

    def _read_listing(self, path: str, fields: str | None, size: int) -> _Listing:
        pages, overflow = self._read_pages(path, fields, size)
        records: list[Any] = []
        ids: list[str | None] = []
        seen: set[str] = set()
        repeated = 0
        for page, _total in pages:
            page_ids = [r.get("id") if isinstance(r, dict) and isinstance(r.get("id"), str) else None for r in page]
            on_page = {i for i in page_ids if i is not None}
            repeated += len(on_page & seen)  # within one page a repeat is the source's own, not drift
            seen |= on_page
            records.extend(page)
            ids.extend(page_ids)
        totals = tuple(t for _page, t in pages)
        announced = {t for t in totals if t is not None}
        problems: list[str] = []
        if repeated:
            problems.append(f"{repeated} ids repeated across pages")
        if len(announced) > 1:
            problems.append("the total count changed while paging")
        short = len(announced) == 1 and len(records) < next(iter(announced))
        if short:
            problems.append(f"{len(records)} records where X-Total-Count announced {next(iter(announced))}")
        if overflow:
            problems.append("records beyond the short page that ended the listing")
        return _Listing(
            records=records,
            fingerprint=(tuple(ids), tuple(sorted(announced))),
            problem="; ".join(problems) or None,
            incomplete=short or overflow,
        )

    def _list(self, path: str, fields: str) -> list[Any]:
        """Every record of a listing, read again while it is inconsistent (module docstring)."""
        previous: _Listing | None = None
        listing: _Listing | None = None
        for read in range(self.max_reads):
            # Every other read pages with one record less per page: a repeat that depends on where the
            # pages break (drift, an off-by-one offset) then moves, while the source's own duplicates stay.
            size = self.page_size if read % 2 == 0 else max(1, self.page_size - 1)
            listing = self._read_listing(path, fields, size)
            if listing.problem is None:
                return listing.records
            if previous is not None and listing.fingerprint == previous.fingerprint:
                if listing.incomplete:
                    raise IncompleteListingError(
                        f"Unified.to {path} {self._where()} is missing records on every read ({listing.problem}); "
                        "nothing was changed, since the missing employees would be flagged non_matching",
                        tenant=self.tenant,
                    )
                return listing.records  # the same repeated ids twice: the source's own duplicates
            previous = listing
        assert listing is not None and listing.problem is not None
        raise InconsistentListingError(
            f"Unified.to {path} {self._where()} gave a different listing on each of {self.max_reads} reads "
            f"({listing.problem}): it changed while being paged, or pages inconsistently; nothing was changed",
            tenant=self.tenant,
        )

    def list_employees(self) -> list[Any]:
        """Every HrisEmployee of the connection, raw (normalize them with `sources.normalize`)."""
        return self._list("/employee", EMPLOYEE_FIELDS)

    def list_groups(self) -> list[Any]:
        """Every HrisGroup of the connection, raw."""
        return self._list("/group", GROUP_FIELDS)


@dataclass
class _Read:
    """One read of a listing in progress: its pages so far, the page that ended it, the last page announced."""

    size: int
    pages: dict[int, tuple[list[Any], int | None]] = field(default_factory=dict)
    end: int | None = None  # the first short page
    hint: int | None = None  # the last page page 0's X-Total-Count implies (None: no total)

    def arrived(self, index: int, result: tuple[list[Any], int | None]) -> None:
        self.pages[index] = result
        page, total = result
        if index == 0:
            self.hint = total // self.size if total is not None else None
        if len(page) < self.size and (self.end is None or index < self.end):
            self.end = index


@dataclass(frozen=True)
class _Listing:
    records: list[Any]
    fingerprint: tuple[tuple[str | None, ...], tuple[int, ...]]  # ids in order, the totals announced
    problem: str | None  # why the read looks inconsistent, or None
    incomplete: bool  # records are missing (fewer than announced, or more after the last page)


def _total_count(response: httpx.Response) -> int | None:
    value = response.headers.get("x-total-count")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # an unreadable total is no total: paging still ends on a short page
