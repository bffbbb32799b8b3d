"""Reading a whole listing by `limit`/`offset` pages: concurrent pages, a stop rule, a page cap, and reading
again until the listing is consistent.

Stop rule: page k is at offset k*limit; the first page shorter than `limit` is the last (so N*limit
records end with an empty page); a page longer than `limit` is a malformed answer (the caller's fetch
refuses it). More than `max_pages` pages is a PageLimitError rather than a loop forever on a source that
keeps sending new records.

Concurrent paging: offsets are known in advance, so up to `concurrency` pages can be in flight at once
on a thread pool (the page fetch must be thread-safe). The first PROBE_PAGES pages go one at a time,
timed: a page's wall time over the client's own CPU time for it says how many requests it takes to keep
the client busy (Little's law), and that, capped at `concurrency`, is the window for the rest. A source
that answers in microseconds (the simulator next door) is then read one page at a time, because threads
contending for the GIL would only cost CPU; a source 30 ms away gets the whole window. Page 0's
X-Total-Count says how many more pages to ask for (without one, `window` pages at a time). Pages are
kept in order; the first short page ends the listing and pages requested beyond it are discarded (they
must be empty). Read one at a time without a total, one page beyond a short page other than the first
is still asked for, so a short page in the middle is caught as it is by concurrent reads.

Repeated ids: a read stops at the first id repeated across pages, as the pages arrive (in order), not
after reading on: a source that ignores `offset` repeats its first page on its second, and reading on to
the page cap would hold a million records. A repeat is the source's own duplicate (passed on, quarantined
downstream) when the id stands at the same two positions of the listing asked for with pages one record
shorter; one that moves with the page size is paging going wrong (drift, an off-by-one or ignored offset).
Which it is, is found out without asking more than needed:
- a repeat of an id of the page just before stops the read at once (what drift and an ignored offset
  look like; checking would cost requests in exactly the reads that never agree, tasks/extract.py's worst
  case); the next read, at the other page size, finds a duplicate of the source's own at the same two
  positions, and that is the check: it reads on;
- a repeat of an id from further back is checked at once: the two positions are asked for at the other
  page size (each such page once per read), and the read goes on or stops.
(Within one page, a repeat is always the source's own.)

Consistent listings: a listing is read again (at most `max_reads` times in all) when a read stopped at a
repeated id, when pages disagree on `X-Total-Count`, when fewer records arrive than it announced, or
when records turn up beyond the page that ended it; every other read uses a page one record shorter, so
that a repeat caused by where pages break moves. Two whole reads that agree exactly are the source's
truth: still too few records is an IncompleteListingError (permanent). Reads that never agree are an
InconsistentListingError (transient). A missed page must never reach matching, where it would flag its
employees `non_matching`.

Reducing pages: a read keeps of each page only its ids (all the checks above compare: positions, repeats,
totals, the fingerprint of two reads) and what the caller's `reduce(position, records)` makes of its records,
called on the thread that fetched the page as soon as it arrives, so that the page's raw records are dropped
there and then; a listing of a million decoded records is never held (issue 16). Reduced pages are handed to
`combine` in runs of COMBINE_PAGES as the checks pass them in order (and the rest when the read ends). A read
that is not the answer (inconsistent, stopped) is dropped whole, its reduced pages with it; only its ids stay
until the next read is compared with it. `read_listing` is the same with the records kept as they came.

Reading again is a retry layer of its own: it follows only a read whose every page arrived (a page
whose request still fails after its retries fails the listing at once), so it multiplies the requests
made per page, up to `max_reads` times, not the attempts of a request that never succeeds.
tasks/extract.py counts it in the retry budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Generic, TypeVar

from sources.errors import IncompleteListingError, InconsistentListingError, PageLimitError

# 2M records: twice the largest tenant the product is sized for (1M users, issue 16); hitting it means paging
# never ends. (It was 10,000, which a tenant of exactly 1M users needs plus the empty page that ends it.)
MAX_PAGES = 20_000
# Pages in flight at once. 8 x 100 records keeps a 30 ms-latency source ~8x faster than one page at a time
# while staying far below any documented rate limit; a 429 pauses all of them together.
DEFAULT_CONCURRENCY = 8
PROBE_PAGES = 3  # pages read one at a time, timed, before the window is chosen (page 0 is not timed)
MAX_READS = 3  # reads of one listing before an inconsistent source fails the run

Page = tuple[list[Any], int | None]  # a page's records and its X-Total-Count (None when absent)
FetchPage = Callable[[int, int], Page]  # (page index, page size) -> the page at offset index * size
P = TypeVar("P")  # a page as reduced
B = TypeVar("B")  # a run of reduced pages, combined
# (position of the page's first record in the listing, the page's records) -> what a read keeps of the page.
# Called on the thread that fetched the page, pages of one read possibly at once: it must be thread-safe.
ReducePage = Callable[[int, list[Any]], P]
# Reduced pages that follow one another, in order -> one value for all of them (called on the reading thread).
CombinePages = Callable[[list[P]], B]
# Reduced pages are combined as soon as this many in a row are checked (and the rest when the read ends):
# blocks of 5,000 records, so that a page's few values need no container of their own for long.
COMBINE_PAGES = 50
# An id repeated across pages: (id, position of its first occurrence, position of the repeat) in the listing.
Repeat = tuple[str, int, int]


def _id_of(record: Any) -> str | None:
    return record.get("id") if isinstance(record, dict) and isinstance(record.get("id"), str) else None


def _records(_start: int, records: list[Any]) -> list[Any]:
    return records


def _joined(pages: list[list[Any]]) -> list[Any]:
    return [record for page in pages for record in page]


def window(timings: list[tuple[float, float]], concurrency: int) -> int:
    """Pages to keep in flight: a page's wall time over the client's CPU time for it, within 1..concurrency."""
    wall = sum(w for w, _cpu in timings)
    cpu = max(sum(c for _wall, c in timings), 1e-6)
    return max(1, min(concurrency, int(wall / cpu)))


class Pager:
    """Reads listings for one tenant: every page once per read, reads repeated until they agree."""

    def __init__(self, *, tenant: str, page_size: int, max_pages: int, concurrency: int, max_reads: int) -> None:
        if concurrency < 1 or max_reads < 1:
            raise ValueError("concurrency and max_reads must be at least 1")
        self.tenant = tenant
        self.page_size = page_size
        self.max_pages = max_pages
        self.concurrency = concurrency
        self.max_reads = max_reads

    def read_listing(self, fetch: FetchPage, what: str) -> list[Any]:
        """Every record of a listing, read again while it is inconsistent (module docstring).

        `what` names the listing in error messages ("Unified.to /employee for connection c1").
        """
        return _joined(self.read_pages(fetch, what, _records, _joined))

    def read_pages(self, fetch: FetchPage, what: str, reduce: ReducePage[P], combine: CombinePages[P, B]) -> list[B]:
        """A listing as `read_listing` reads it, each page reduced as it arrives, `reduce(position, records)`,
        and the reduced pages combined in order, `combine(pages)`, in runs of COMBINE_PAGES as they are checked
        (and the pages left when the read ends): the combined runs of the pages up to the one that ended the
        listing, in order (module docstring, "Reducing pages").
        """
        repeats, reducer = _Repeats(), _Reducer(reduce, combine)
        listing = self._read(fetch, self.page_size, what, repeats, reducer)
        for read in range(1, self.max_reads):
            if listing.problem is None:
                return listing.pages
            listing = replace(listing, pages=[])  # never the answer now: only its fingerprint is compared
            # Every other read pages with one record less per page: a repeat that depends on where the
            # pages break (drift, an off-by-one offset) then moves, while the source's own duplicates stay.
            size = self.page_size if read % 2 == 0 else max(1, self.page_size - 1)
            again = self._read(fetch, size, what, repeats, reducer)
            if again.problem is not None and not again.stopped and again.fingerprint == listing.fingerprint:
                if again.incomplete:
                    raise IncompleteListingError(
                        f"{what} is missing records on every read ({again.problem}); "
                        "nothing was changed, since the missing employees would be flagged non_matching",
                        tenant=self.tenant,
                    )
                return again.pages  # two whole reads that agree (on totals that disagree): the source's truth
            listing = again
        if listing.problem is None:
            return listing.pages
        raise InconsistentListingError(
            f"{what} gave a different listing on each of {self.max_reads} reads "
            f"({listing.problem}): it changed while being paged, or pages inconsistently; nothing was changed",
            tenant=self.tenant,
        )

    def _read(self, fetch: FetchPage, size: int, what: str, repeats: _Repeats, reducer: _Reducer[P, B]) -> _Listing[B]:
        """One read of a listing, with what looks inconsistent about it. `repeats` is what the reads of this
        listing found out about repeated ids so far, and learns what this one finds."""
        read = _Read(size, is_own=partial(self._is_own, fetch, size, repeats, {}), reducer=reducer)
        pages, overflow = self._read_pages(fetch, read, what)
        if read.repeat is not None:  # stopped at the first repeat not known to be the source's own
            repeats.stopped[read.repeat] = size
            return _Listing(
                pages=[],
                fingerprint=((), ()),
                problem=f"an id repeated across pages (page {read.end} of {size} records)",
                incomplete=False,
                stopped=True,
            )
        ids = tuple(record_id for page_ids, _total in pages for record_id in page_ids)
        announced = {total for _ids, total in pages if total is not None}
        problems: list[str] = []
        if len(announced) > 1:
            problems.append("the total count changed while paging")
        short = len(announced) == 1 and len(ids) < next(iter(announced))
        if short:
            problems.append(f"{len(ids)} records where X-Total-Count announced {next(iter(announced))}")
        if overflow:
            problems.append("records beyond the short page that ended the listing")
        return _Listing(
            pages=read.kept_pages(),
            fingerprint=(ids, tuple(sorted(announced))),
            problem="; ".join(problems) or None,
            incomplete=short or overflow,
        )

    def _is_own(
        self,
        fetch: FetchPage,
        size: int,
        repeats: _Repeats,
        asked: dict[int, list[str | None]],
        repeat: Repeat,
        *,
        from_page_before: bool,
    ) -> bool:
        """Whether `repeat`, met by a read at `size`, is the source's own duplicate (module docstring): known
        as such, or met by a read at the other page size at the same two positions; else, unless it repeats
        the page just before, whether it stands at those positions when pages hold one record less (one
        more for a page of one). `asked` keeps the ids of the pages this read asked for at that size, so that
        duplicates close together cost a request or two, not two each."""
        if repeat in repeats.own or repeats.stopped.get(repeat, size) != size:
            repeats.own.add(repeat)
            return True
        if from_page_before:
            return False
        other = size - 1 if size > 1 else size + 1
        repeated, *positions = repeat
        for position in positions:
            index = position // other
            if index not in asked:
                asked[index] = [_id_of(record) for record in fetch(index, other)[0]]
            ids, at = asked[index], position - index * other
            if at >= len(ids) or ids[at] != repeated:
                return False
        repeats.own.add(repeat)
        return True

    def _read_pages(self, fetch: FetchPage, read: _Read[P, B], what: str) -> tuple[list[_Ids], bool]:
        """The ids and X-Total-Count of one read's pages in order up to the first short one (or the first page
        with a repeated id that is not the source's own), and whether any page fetched beyond a short one held
        records (then it was not the end). Stop rule and window: module docstring.
        """
        size = read.size
        next_index = 0
        window_size = 1
        timings: list[tuple[float, float]] = []  # (wall, CPU) seconds of the timed pages read one at a time
        # One at a time while probing, and for good when the window stays 1.
        while read.end is None and next_index < self.max_pages and (window_size == 1 or len(timings) < PROBE_PAGES):
            wall, cpu = time.perf_counter(), time.thread_time()
            read.arrived(next_index, _arrive(fetch, read.reducer.reduce, next_index, size))
            if next_index > 0:  # page 0 also pays for connecting
                timings.append((time.perf_counter() - wall, time.thread_time() - cpu))
            next_index += 1
            if len(timings) == PROBE_PAGES:
                window_size = window(timings, self.concurrency)
        if read.end and read.repeat is None and read.hint is None and next_index == read.end + 1 < self.max_pages:
            # Without a total, a concurrent read would have asked past a short page in the middle: so do we.
            # (A short first page is taken as it is, as before: it is what the guard's empty-source rule is for.)
            read.arrived(next_index, _arrive(fetch, read.reducer.reduce, next_index, size))
            next_index += 1
        if read.end is None and next_index < self.max_pages:
            self._read_concurrently(fetch, read, window_size, next_index)
        if read.end is None:
            raise PageLimitError(f"{what} did not end within {self.max_pages} pages", tenant=self.tenant)
        overflow = read.repeat is None and any(ids for i, (ids, _total) in read.pages.items() if i > read.end)
        return [read.pages[i] for i in range(read.end + 1)], overflow

    def _read_concurrently(self, fetch: FetchPage, read: _Read[P, B], window_size: int, next_index: int) -> None:
        """Read on from page `next_index` with up to `window_size` pages in flight, until a short page.

        With an X-Total-Count, exactly the pages it implies are requested; without one (or past it),
        `window_size` at a time.
        """
        hint = read.hint
        pool = ThreadPoolExecutor(max_workers=window_size, thread_name_prefix="listing-page")
        in_flight: dict[Future[_Arrived[P]], int] = {}
        try:
            while True:
                while (
                    len(in_flight) < window_size
                    and read.end is None
                    and next_index < self.max_pages
                    and (hint is None or next_index <= hint)
                ):
                    in_flight[pool.submit(_arrive, fetch, read.reducer.reduce, next_index, read.size)] = next_index
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


_Ids = tuple[list[str | None], int | None]  # a page's ids (what the consistency checks compare) and its total


@dataclass(frozen=True)
class _Reducer(Generic[P, B]):
    """What a read keeps of its pages (Pager.read_pages)."""

    reduce: ReducePage[P]
    combine: CombinePages[P, B]


@dataclass(frozen=True)
class _Arrived(Generic[P]):
    """A page as it arrives: its ids, what `reduce` kept of its records, and its X-Total-Count. Not its records."""

    ids: list[str | None]
    kept: P
    total: int | None


def _arrive(fetch: FetchPage, reduce: ReducePage[P], index: int, size: int) -> _Arrived[P]:
    """Page `index` at `size`, reduced on the thread that fetched it: its raw records go when this returns."""
    records, total = fetch(index, size)
    return _Arrived([_id_of(record) for record in records], reduce(index * size, records), total)


@dataclass
class _Read(Generic[P, B]):
    """One read of a listing in progress: its pages so far, the page that ended it, the last page announced,
    and the ids seen so far (pages are checked for repeats in order, whatever order they arrive in)."""

    size: int
    is_own: Callable[..., bool]  # (repeat, from_page_before=...): the source's own duplicate? (Pager._is_own)
    reducer: _Reducer[P, B]  # what is kept of each page's records
    pages: dict[int, _Ids] = field(default_factory=dict)
    kept: dict[int, P] = field(default_factory=dict)  # what `reduce` kept of each page not yet combined
    combined: list[B] = field(default_factory=list)  # `combine` of pages 0 .. COMBINE_PAGES * len(combined) - 1
    end: int | None = None  # the first short page, or the page of `repeat`
    hint: int | None = None  # the last page page 0's X-Total-Count implies (None: no total)
    repeat: Repeat | None = None  # the repeated id that stopped the read
    checked: int = 0  # pages checked for repeated ids so far (pages 0 .. checked - 1)
    first_at: dict[str, int] = field(default_factory=dict)  # id -> where it first stood, on the pages checked

    def arrived(self, index: int, page: _Arrived[P]) -> None:
        self.pages[index] = (page.ids, page.total)
        self.kept[index] = page.kept
        if index == 0:
            self.hint = page.total // self.size if page.total is not None else None
        if len(page.ids) < self.size and (self.end is None or index < self.end):
            self.end = index
        while self.repeat is None and self.checked in self.pages and (self.end is None or self.checked <= self.end):
            self._check(self.checked)
            self.checked += 1
        while self.repeat is None and self.checked - self.uncombined >= COMBINE_PAGES:
            # Checked pages are the listing's (or the read is dropped whole): no later page can change them.
            start = self.uncombined
            self.combined.append(self.reducer.combine([self.kept.pop(i) for i in range(start, start + COMBINE_PAGES)]))

    @property
    def uncombined(self) -> int:
        """The first page not combined yet."""
        return COMBINE_PAGES * len(self.combined)

    def kept_pages(self) -> list[B]:
        """What is kept of the pages up to the one that ended the read, combined, in order."""
        assert self.end is not None
        rest = [self.kept[i] for i in range(self.uncombined, self.end + 1)]
        return [*self.combined, self.reducer.combine(rest)] if rest else list(self.combined)

    def _check(self, index: int) -> None:
        """Stop the read at page `index` if it repeats an id of an earlier page that is not the source's own."""
        start = index * self.size
        on_page: dict[str, int] = {}
        for offset, record_id in enumerate(self.pages[index][0]):
            if record_id is None:
                continue
            first = self.first_at.get(record_id)
            if first is not None:
                repeat = (record_id, first, start + offset)
                if not self.is_own(repeat, from_page_before=first >= start - self.size):
                    self.repeat, self.end = repeat, index
                    return
            on_page.setdefault(record_id, start + offset)
        for record_id, position in on_page.items():
            self.first_at.setdefault(record_id, position)


@dataclass
class _Repeats:
    """What the reads of one listing found out about ids repeated across pages."""

    own: set[Repeat] = field(default_factory=set)  # the source's own duplicates: reads go on past them
    stopped: dict[Repeat, int] = field(default_factory=dict)  # repeat -> the page size of a read it stopped


@dataclass(frozen=True)
class _Listing(Generic[B]):
    pages: list[B]  # `combine` of runs of the reduced pages, in order
    fingerprint: tuple[tuple[str | None, ...], tuple[int, ...]]  # ids in order, the totals announced
    problem: str | None  # why the read looks inconsistent, or None
    incomplete: bool  # records are missing (fewer than announced, or more after the last page)
    stopped: bool = False  # ended early at a repeated id: never the listing, whatever another read says
