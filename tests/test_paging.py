"""Paging a listing: concurrent page requests, and reading again when the source changes under the client.

All against the simulator over real HTTP. No assertion is about wall time: concurrency shows in the
simulator's own count of requests answered at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from simulator import Fault, FaultPlan, SimulatorSource, create_app, generate_dataset
from simulator.serve import running_simulator
from sources.errors import IncompleteListingError, InconsistentListingError, TransientSourceError
from tests.simulated import Sim

TOKEN = "paging-token-77a1"


def serve(users: int, latency_ms: float = 0) -> Iterator[Sim]:
    source = SimulatorSource(generate_dataset(users, seed=11))
    faults = FaultPlan()
    app = create_app(source, token=TOKEN, faults=faults, latency_ms=latency_ms)
    with running_simulator(app) as url:
        yield Sim(url, source, faults, app.state.simulator, TOKEN)


@pytest.fixture
def sim() -> Iterator[Sim]:
    yield from serve(1000)


@pytest.fixture
def slow_sim() -> Iterator[Sim]:
    yield from serve(1000, latency_ms=30)


def ids(records: list[Any]) -> list[str]:
    return [r["id"] for r in records]


def expected(sim: Sim) -> list[str]:
    return ids(sim.source.current().employee.records)


# ---- concurrency ---------------------------------------------------------------------------------


def test_pages_are_requested_concurrently_up_to_the_configured_bound(slow_sim: Sim) -> None:
    with slow_sim.client(concurrency=4) as client:
        records = client.list_employees()
    assert ids(records) == expected(slow_sim)  # page order preserved
    # why: with 30 ms per request, 4 workers overlap; the bound holds
    assert 2 <= slow_sim.state.max_in_flight <= 4


def test_a_default_client_keeps_up_to_eight_pages_in_flight(slow_sim: Sim) -> None:
    slow_sim.source.replace(generate_dataset(3000, seed=4))  # 31 pages: room for a full window after the probe
    with slow_sim.client() as client:
        assert ids(client.list_employees()) == expected(slow_sim)
    # why: 30 ms per request is many times the client's CPU time per page, so the whole window is used
    assert 4 < slow_sim.state.max_in_flight <= 8


def test_concurrency_one_means_one_page_at_a_time(slow_sim: Sim) -> None:
    with slow_sim.client(concurrency=1) as client:
        assert ids(client.list_employees()) == expected(slow_sim)
    assert slow_sim.state.max_in_flight == 1


def test_with_a_total_count_exactly_the_needed_pages_are_requested(sim: Sim) -> None:
    # why: 1000 records = 10 full pages, then the empty page that the stop rule needs; nothing more
    with sim.client() as client:
        client.list_employees()
    offsets = sorted(int(r.offset) for r in sim.state.requests if r.kind == "employee")
    assert offsets == [100 * i for i in range(11)]


def test_without_a_total_count_pages_beyond_the_end_are_fetched_and_discarded(sim: Sim) -> None:
    sim.source.replace(generate_dataset(250, seed=2))
    sim.faults.add(Fault(omit_total=True, sticky=True))
    with sim.client(concurrency=8) as client:
        records = client.list_employees()
    assert ids(records) == expected(sim)
    offsets = [int(r.offset) for r in sim.state.requests if r.kind == "employee"]
    assert max(offsets) > 200  # speculative pages past the short one were asked for...
    assert len(records) == 250  # ...and their (empty) answers dropped


def test_a_429_pauses_every_worker_not_just_the_one_that_got_it(slow_sim: Sim) -> None:
    state = slow_sim.state
    seen_during_pause: list[int] = []

    def sleep(seconds: float) -> None:
        slow_sim.sleeps.append(seconds)
        time.sleep(0.1)  # let requests sent before the pause arrive
        before = state.received
        time.sleep(0.3)
        seen_during_pause.append(state.received - before)

    slow_sim.faults.add(Fault(status=429, retry_after="0.4", kind="employee", at_offset=300))
    with slow_sim.client(concurrency=8, sleep=sleep) as client:
        assert ids(client.list_employees()) == expected(slow_sim)
    assert slow_sim.sleeps == [0.4]  # one pause for the pool, not one per worker
    assert seen_during_pause == [0]  # no worker sent a request while it lasted


def test_concurrent_429s_pause_the_pool_about_once_not_once_each_in_turn(slow_sim: Sim) -> None:
    # why: eight workers hit by one burst must not queue eight full Retry-After sleeps back to back
    slow_sim.faults.add(
        *[Fault(status=429, retry_after="0.2", kind="employee", at_offset=o) for o in range(100, 900, 100)]
    )
    real: list[float] = []

    def sleep(seconds: float) -> None:
        real.append(seconds)
        time.sleep(seconds)

    with slow_sim.client(concurrency=8, sleep=sleep) as client:
        assert ids(client.list_employees()) == expected(slow_sim)
    assert len(real) >= 1
    assert sum(real) < 8 * 0.2  # the workers waiting behind the first pause only sleep what is left


def test_a_failing_page_fails_the_whole_listing(sim: Sim) -> None:
    sim.faults.add(*[Fault(status=503, at_offset=500)] * 3)
    with sim.client(max_attempts=3) as client, pytest.raises(TransientSourceError, match="503"):
        client.list_employees()


# ---- consistency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        # why: a record added at the front while paging: the next page repeats one record (and one shifts out)
        Fault(shift=-1, at_offset=300, kind="employee"),
        # why: a record removed at the front while paging: the next page skips one record
        Fault(shift=1, at_offset=300, kind="employee"),
        # why: a page that comes back half full looks like the end of the listing: a missed page
        Fault(page_cut=50, at_offset=300, kind="employee"),
        # why: the first page announces a total the others contradict
        Fault(total_delta=7, at_offset=0, kind="employee"),
    ],
    ids=["repeat", "skip", "short-page", "total-changes"],
)
def test_an_inconsistent_read_is_read_again_and_the_listing_is_whole(sim: Sim, fault: Fault) -> None:
    sim.faults.add(fault)
    with sim.client() as client:
        records = client.list_employees()
    assert ids(records) == expected(sim)
    assert sim.reads() == 2


def test_a_short_page_is_caught_even_without_a_total_count(sim: Sim) -> None:
    # why: the pages fetched past the short one hold records, so it was not the end
    # (the first queued fault that applies wins, so the cut page comes first and omits the total too)
    sim.faults.add(Fault(page_cut=50, at_offset=300, omit_total=True), Fault(omit_total=True, sticky=True))
    with sim.client(concurrency=8) as client:
        assert ids(client.list_employees()) == expected(sim)
    assert sim.reads() == 2


def test_a_source_that_drifts_on_every_read_fails_the_run_as_transient(sim: Sim) -> None:
    # a repeat at every page size the client tries: the source keeps changing while being paged
    sim.faults.add(Fault(shift=-1, at_offset=300, sticky=True), Fault(shift=-1, at_offset=297, sticky=True))
    with sim.client(max_reads=3) as client, pytest.raises(InconsistentListingError) as info:
        client.list_employees()
    assert info.value.transient
    assert "different listing on each of 3 reads" in str(info.value)
    assert "repeated across pages" in str(info.value)
    assert sim.reads() == 3


def test_a_total_count_that_is_always_too_high_fails_the_run_as_permanent(sim: Sim) -> None:
    # why: two reads agree and still miss records: reading again cannot help, and loading would flag them
    sim.faults.add(Fault(total_delta=10, sticky=True))
    with sim.client() as client, pytest.raises(IncompleteListingError) as info:
        client.list_employees()
    assert not info.value.transient
    assert "1000 records where X-Total-Count announced 1010" in str(info.value)
    assert sim.reads() == 2


def test_a_total_count_that_is_too_low_is_tolerated(sim: Sim) -> None:
    # why: more records than announced misses no one; nothing to re-read
    sim.faults.add(Fault(total_delta=-10, sticky=True))
    with sim.client() as client:
        assert ids(client.list_employees()) == expected(sim)
    assert sim.reads() == 1


def test_the_sources_own_duplicate_ids_across_pages_are_passed_on_for_quarantine(sim: Sim) -> None:
    # why: a genuine duplicate stays where it is whatever the page size; validate quarantines it
    data = generate_dataset(250, seed=5)
    data["employees"][150] = dict(data["employees"][10])
    sim.source.replace(data)
    with sim.client() as client:
        records = client.list_employees()
    assert ids(records) == ids(data["employees"])
    assert sim.reads() == 2  # read once more, with another page size, to tell it from drift


def test_groups_are_checked_the_same_way(sim: Sim) -> None:
    sim.source.replace(generate_dataset(5000, seed=1))  # > 100 groups
    sim.faults.add(Fault(shift=-1, at_offset=100, kind="group"))
    with sim.client() as client:
        groups = client.list_groups()
    assert [g["id"] for g in groups] == [g["id"] for g in sim.source.current().group.records]
