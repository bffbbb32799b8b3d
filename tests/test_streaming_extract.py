"""The extract reads each page into columns as it arrives and drops its raw records (issue 16): the frames are
exactly those of normalizing the whole listing at once, the checks that make a listing consistent work on
the pages' ids as before, and no page's records outlive its reading.
"""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from polars.testing import assert_frame_equal

from simulator import Fault, FaultPlan, SimulatorSource, create_app, edge_case_dataset, generate_dataset
from simulator.serve import running_simulator
from sources.errors import IncompleteListingError, InconsistentListingError
from sources.model import GROUPS_EMBEDDED_ONLY, SourceSnapshot
from sources.normalize import (
    group_block,
    normalize,
    normalize_blocks,
    read_group_page,
    read_user_page,
    user_block,
)
from sources.paging import COMBINE_PAGES, Pager
from tasks import extract as ex
from tests.simulated import Sim

TOKEN = "streaming-token-6b2d"


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sim]:
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    source = SimulatorSource(generate_dataset(1000, seed=11))
    faults = FaultPlan()
    app = create_app(source, token=TOKEN, faults=faults)
    with running_simulator(app) as url:
        yield Sim(url, source, faults, app.state.simulator, TOKEN)


def config(sim: Sim) -> ex.SourceConfig:
    return ex.SourceConfig(
        tenant="acme", source="unified", provider="entra", connection_id="conn-demo", base_url=sim.url
    )


def assert_same_snapshot(streamed: SourceSnapshot, whole: SourceSnapshot) -> None:
    for frame in ("users", "memberships", "groups"):
        assert_frame_equal(getattr(streamed, frame), getattr(whole, frame))
    assert (streamed.ignored_group_ids, streamed.group_source) == (whole.ignored_group_ids, whole.group_source)


# Records no generated tenant has, each on a page of its own at small page sizes: what could differ when a
# listing is normalized page by page instead of whole.
ODD_EMPLOYEES: list[Any] = [
    # why: an embedded group named first without a name or type, and later with one: the later one is used
    {"id": "odd-1", "emails": [{"email": "odd1@acme.example", "type": "WORK"}], "groups": [{"id": "g-late"}]},
    {
        "id": "odd-2",
        "emails": [{"email": "odd2@acme.example", "type": "WORK"}],
        # why: a blank name is a name given: it stays first (and is cleaned to none), the later "Y" is not used
        "groups": [{"id": "g-late", "name": "Late", "type": "team"}, {"id": "g-blank", "name": " "}],
    },
    {
        "id": "odd-3",
        "emails": [{"email": "odd3@acme.example", "type": "WORK"}],
        "groups": [{"id": "g-blank", "name": "Y"}],
    },
    "not an object",  # why: a problem row at its own position
    {"id": 5, "emails": [{"email": "odd5@acme.example"}]},  # why: an id of the wrong type
    {"id": "odd-1", "emails": [{"email": "again@acme.example", "type": "WORK"}]},  # why: the source's own repeat
]
ODD_GROUPS: list[Any] = [
    {"id": "g-dup", "name": "first", "user_ids": ["odd-1"]},
    {"id": "g-mixed", "user_ids": ["odd-2", 3, " "]},  # why: entries that are not user ids are skipped
    {"id": "g-dup", "name": "second", "user_ids": ["odd-3"]},  # why: a repeated group keeps its first record
    7,
    {"id": " "},
]


def in_blocks(records: list[Any], size: int, per_block: int, read: Any, block: Any) -> list[Any]:
    """`records` read in pages of `size`, `per_block` pages to a block, as the extract reads a listing."""
    pages = [read(start, records[start : start + size]) for start in range(0, len(records), size)] or [read(0, [])]
    return [block(pages[i : i + per_block]) for i in range(0, len(pages), per_block)]


@pytest.mark.parametrize(
    "data",
    [
        edge_case_dataset(),
        generate_dataset(3000, seed=3),
        generate_dataset(1500, seed=4, provider="personio"),
        generate_dataset(1500, seed=5, provider="google", embedded_groups=True),
        {"employees": [], "groups": []},
    ],
    ids=["edge-cases", "entra", "personio", "google-embedded", "empty"],
)
@pytest.mark.parametrize(("size", "per_block"), [(1, 1), (3, 2), (7, COMBINE_PAGES), (100, COMBINE_PAGES)])
def test_a_listing_normalized_page_by_page_gives_the_frames_of_the_whole_listing(
    data: dict[str, list[Any]], size: int, per_block: int
) -> None:
    employees = [*ODD_EMPLOYEES[:3], *data["employees"], *ODD_EMPLOYEES[3:]]
    groups = [*ODD_GROUPS, *data["groups"], *ODD_GROUPS]
    streamed = normalize_blocks(
        in_blocks(employees, size, per_block, read_user_page, user_block),
        in_blocks(groups, size, per_block, read_group_page, group_block),
    )
    assert_same_snapshot(streamed, normalize(employees, groups))


@pytest.mark.parametrize(
    "data",
    [
        edge_case_dataset(),
        generate_dataset(6000, seed=3),  # 61 pages: a block of COMBINE_PAGES pages and the rest
        generate_dataset(2000, seed=4, provider="personio"),  # no group listing: groups from employees only
    ],
    ids=["edge-cases", "entra", "personio"],
)
def test_the_streamed_extract_gives_exactly_the_frames_of_the_whole_listing(sim: Sim, data: dict[str, Any]) -> None:
    sim.source.replace(data)
    streamed = ex.extract(config(sim))
    with sim.client() as client:
        employees = client.list_employees()
        groups = [] if streamed.group_source == GROUPS_EMBEDDED_ONLY else client.list_groups()
    assert_same_snapshot(streamed, normalize(employees, groups, group_source=streamed.group_source))
    assert streamed.users.height == len(data["employees"])


def test_the_records_position_counts_across_pages(sim: Sim) -> None:
    data = generate_dataset(250, seed=5)
    data["employees"][170]["emails"] = []  # why: a problem row far from the first page names its own position
    sim.source.replace(data)
    users = ex.extract(config(sim)).users
    assert users["record"].to_list() == list(range(250))
    assert users.filter(users["problem"].is_not_null())["record"].to_list() == [170]


# ---- the consistency checks need only the pages' ids ----------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        # why: a record added at the front while paging: the next page repeats one record (and one shifts out)
        Fault(shift=-1, at_offset=300, kind="employee"),
        # why: a page that comes back half full looks like the end of the listing: a missed page
        Fault(page_cut=50, at_offset=300, kind="employee"),
        # why: the first page announces a total the others contradict
        Fault(total_delta=7, at_offset=0, kind="employee"),
    ],
    ids=["repeat", "short-page", "total-changes"],
)
def test_an_inconsistent_read_is_read_again_and_the_streamed_frames_are_whole(sim: Sim, fault: Fault) -> None:
    whole = normalize(sim.source.current().employee.records, sim.source.current().group.records)
    sim.faults.add(fault)
    streamed = ex.extract(config(sim))
    assert sim.reads() == 2
    assert_same_snapshot(streamed, whole)


def test_the_sources_own_duplicate_ids_are_passed_on_in_place(sim: Sim) -> None:
    # why: a genuine duplicate stays where it is whatever the page size; validate quarantines it
    data = generate_dataset(250, seed=5)
    data["employees"][150] = dict(data["employees"][10])
    sim.source.replace(data)
    users = ex.extract(config(sim)).users
    assert sim.reads() == 2
    assert users["user_id"][150] == users["user_id"][10]
    assert users["record"].to_list() == list(range(250))


def test_a_source_that_drifts_on_every_read_still_fails_the_run_as_transient(sim: Sim) -> None:
    sim.faults.add(Fault(shift=-1, at_offset=300, sticky=True), Fault(shift=-1, at_offset=297, sticky=True))
    with pytest.raises(InconsistentListingError) as info:
        ex.extract(config(sim))
    assert info.value.transient
    assert "different listing on each of 3 reads" in str(info.value)
    assert sim.reads() == 3


def test_a_total_count_that_is_always_too_high_still_fails_the_run_as_permanent(sim: Sim) -> None:
    sim.faults.add(Fault(total_delta=10, sticky=True))
    with pytest.raises(IncompleteListingError) as info:
        ex.extract(config(sim))
    assert not info.value.transient
    assert "1000 records where X-Total-Count announced 1010" in str(info.value)
    assert sim.reads() == 2


def test_a_source_that_ignores_offset_is_still_stopped_on_its_second_page(sim: Sim) -> None:
    sim.faults.add(Fault(ignore_offset=True, sticky=True, kind="employee"))
    with pytest.raises(InconsistentListingError, match="repeated across pages"):
        ex.extract(config(sim))
    # each of the three reads stopped on its second page, as when the records were kept
    assert [(r.offset, r.limit) for r in sim.employee_requests()] == [
        ("0", "100"),
        ("100", "100"),
        ("0", "99"),
        ("99", "99"),
        ("0", "100"),
        ("100", "100"),
    ]


# ---- no page's records outlive its reading ------------------------------------------------------


class Records(list[Any]):
    """A page's records as the client hands them over, but weakly referenceable (a plain list is not)."""


def pages_of(records: list[Any], total: int) -> dict[int, bytes]:
    return {start // 100: orjson.dumps(records[start : start + 100]) for start in range(0, total + 1, 100)}


def test_a_pages_records_are_gone_once_the_page_is_reduced() -> None:
    employees = generate_dataset(2000, seed=6)["employees"]
    encoded = pages_of(employees, len(employees))
    alive: list[weakref.ref[Records]] = []
    still_alive_while_reducing: list[int] = []

    def fetch(index: int, size: int) -> tuple[list[Any], int]:
        assert size == 100
        page = Records(orjson.loads(encoded[index]))
        alive.append(weakref.ref(page))
        return page, len(employees)

    def reduce(start: int, records: list[Any]) -> Any:
        # every page fetched before this one has been let go by now, only this one is held
        still_alive_while_reducing.append(sum(ref() is not None for ref in alive))
        return read_user_page(start, records)

    pager = Pager(tenant="acme", page_size=100, max_pages=100, concurrency=1, max_reads=3)
    blocks = pager.read_pages(fetch, "the employees", reduce, user_block)
    assert still_alive_while_reducing == [1] * 21  # 20 full pages and the empty one that ends the listing
    assert all(ref() is None for ref in alive)
    assert sum(block.users.height for block in blocks) == 2000
    assert len(blocks) == 1  # the pages combined: 21 < COMBINE_PAGES


def test_reading_a_large_listing_page_by_page_holds_a_fraction_of_its_records() -> None:
    # why: the raw records of 20,000 users take tens of MB of Python objects; the pages' columns do not
    employees = generate_dataset(20_000, seed=7)["employees"]
    encoded = pages_of(employees, len(employees))
    del employees

    def fetch(index: int, size: int) -> tuple[list[Any], int]:
        return orjson.loads(encoded[index]), 20_000

    def traced_peak(read: Any) -> int:
        pager = Pager(tenant="acme", page_size=100, max_pages=1000, concurrency=1, max_reads=3)
        gc.collect()
        tracemalloc.start()
        try:
            kept = read(pager)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        del kept
        return peak

    whole = traced_peak(lambda pager: pager.read_listing(fetch, "the employees"))
    streamed = traced_peak(lambda pager: pager.read_pages(fetch, "the employees", read_user_page, user_block))
    assert whole > 40 * 1024 * 1024  # not vacuous: the whole listing is that large as Python objects
    assert streamed < whole / 5
