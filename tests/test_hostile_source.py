"""A hostile or broken source cannot exhaust the worker's memory (issue 14, item 5): an answer is read up to a
byte cap and no further, a page longer than the `limit` asked for is a malformed answer, and a read stops at
the first id repeated across pages (a source that ignores `offset` is found on its second page, not after a
million records). Against the simulator over real HTTP, with its faults `oversize`, `overlong` and
`ignore-offset`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from simulator import Fault, FaultPlan, SimulatorSource, create_app, generate_dataset
from simulator.faults import parse_fault_spec
from simulator.serve import running_simulator
from sources.errors import InconsistentListingError, MalformedPayloadError, ResponseTooLargeError
from sources.unified import UnifiedClient
from tasks.extract import SourceConfig, unified_client
from tests.simulated import Sim

TOKEN = "hostile-token-5e1f"
MiB = 1024 * 1024


@pytest.fixture
def sim() -> Iterator[Sim]:
    source = SimulatorSource(generate_dataset(250, seed=14))
    faults = FaultPlan()
    app = create_app(source, token=TOKEN, faults=faults)
    with running_simulator(app) as url:
        yield Sim(url, source, faults, app.state.simulator, TOKEN)


def ids(records: list[Any]) -> list[str]:
    return [r["id"] for r in records]


def test_the_new_faults_have_names_on_the_command_line() -> None:
    assert parse_fault_spec("oversize") == [Fault(oversize=128 * MiB)]
    assert parse_fault_spec("overlong@group") == [Fault(overlong=10, kind="group")]
    assert parse_fault_spec("ignore-offsetx*") == [Fault(ignore_offset=True, sticky=True)]


# ---- bytes per answer -----------------------------------------------------------------------------


def test_an_answer_over_the_byte_cap_is_refused_before_it_is_read_whole(
    sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # why: the body streams without a Content-Length; only counting the bytes read stops it
    monkeypatch.setenv("PROVISIONING_MAX_RESPONSE_BYTES", str(1 * MiB))  # as an operator sets it
    sim.faults.add(Fault(oversize=32 * MiB, kind="employee"))
    config = SourceConfig(
        tenant="acme", source="unified", provider="entra", connection_id="conn-demo", base_url=sim.url
    )
    with unified_client(config, SecretStr(TOKEN)) as client, pytest.raises(ResponseTooLargeError) as info:
        client.list_employees()
    assert str(info.value) == (
        f"tenant acme: Unified.to answered /employee for connection conn-demo with more than {1 * MiB} bytes "
        "(PROVISIONING_MAX_RESPONSE_BYTES); nothing was changed"
    )
    assert not info.value.transient
    # The simulator stopped soon after the client did: a few socket buffers past the cap, not 32 MiB. Read once it
    # has settled (its thread may still be running the answer when the client's error arrives here).
    assert settled(lambda: sim.state.oversize_sent) < 16 * MiB


def settled(read: Callable[[], int], quiet: float = 0.3, limit: float = 5.0) -> int:
    """`read()` once it has not changed for `quiet` seconds (or after `limit` seconds)."""
    value, since, deadline = read(), time.monotonic(), time.monotonic() + limit
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        if (now := read()) != value:
            value, since = now, time.monotonic()
    return value


def test_a_content_length_over_the_cap_is_refused_without_reading_the_body() -> None:
    class Unreadable(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            raise AssertionError("the body was read")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": str(2 * MiB)}, stream=Unreadable())

    client = UnifiedClient(
        base_url="https://api.unified.to",
        token=SecretStr("tok"),
        connection_id="c",
        tenant="t",
        transport=httpx.MockTransport(handler),
        max_response_bytes=MiB,
    )
    with client, pytest.raises(ResponseTooLargeError, match=f"more than {MiB} bytes"):
        client.list_employees()


def test_an_answer_just_under_the_cap_is_read(sim: Sim) -> None:
    sim.faults.add(Fault(oversize=MiB // 2, kind="employee"))
    with sim.client(max_response_bytes=MiB) as client:
        assert ids(client.list_employees()) == ids(sim.source.current().employee.records)


# ---- records per page -----------------------------------------------------------------------------


def test_a_page_longer_than_the_limit_is_a_malformed_answer(sim: Sim) -> None:
    # why: counted as a full page it would page on forever past records it already holds
    sim.faults.add(Fault(overlong=10, at_offset=100, kind="employee"))
    with sim.client() as client, pytest.raises(MalformedPayloadError) as info:
        client.list_employees()
    assert str(info.value) == (
        "tenant acme: Unified.to answered /employee for connection conn-demo with 110 records "
        "where limit=100 allows at most 100; nothing was changed"
    )
    assert not info.value.transient


# ---- ids repeated across pages ----------------------------------------------------------------------


def test_a_source_ignoring_offset_is_found_on_its_second_page(sim: Sim) -> None:
    # why: every page is the first one; reading on to the page cap would hold max_pages * 100 records
    sim.faults.add(Fault(ignore_offset=True, sticky=True, kind="employee"))
    with sim.client(max_pages=1000) as client, pytest.raises(InconsistentListingError) as info:
        client.list_employees()
    assert "repeated across pages" in str(info.value)
    # Three reads of two pages each (page size 100, 99, 100): the second page repeats the first, every time.
    assert [(r.offset, r.limit) for r in sim.employee_requests()] == [
        ("0", "100"),
        ("100", "100"),
        ("0", "99"),
        ("99", "99"),
        ("0", "100"),
        ("100", "100"),
    ]


def test_a_read_stops_at_the_page_that_repeats_an_id(sim: Sim) -> None:
    # why: a page at offset 100 that starts again at 0 stops the read there; pages after it are not asked for
    sim.faults.add(Fault(ignore_offset=True, at_offset=100, kind="employee"))
    with sim.client(concurrency=1) as client:
        assert ids(client.list_employees()) == ids(sim.source.current().employee.records)
    assert [(r.offset, r.limit) for r in sim.employee_requests()] == [
        ("0", "100"),
        ("100", "100"),  # repeats the first page: the read stops here, pages 200 and on are not asked for
        ("0", "99"),  # read again, whole, one record shorter a page
        ("99", "99"),
        ("198", "99"),
    ]


def test_a_duplicate_further_back_is_checked_at_once_and_the_read_goes_on(sim: Sim) -> None:
    # why: the id stands at the same two positions with pages of 99: the source's own, no second read needed
    data = generate_dataset(250, seed=5)
    data["employees"][220] = dict(data["employees"][10])  # page 2 repeats an id of page 0
    sim.source.replace(data)
    with sim.client(concurrency=1) as client:
        assert ids(client.list_employees()) == ids(data["employees"])
    assert [(r.offset, r.limit) for r in sim.employee_requests()] == [
        ("0", "100"),
        ("100", "100"),
        ("200", "100"),  # the repeat: positions 10 and 220 asked for at page size 99
        ("0", "99"),
        ("198", "99"),
    ]


def test_many_duplicate_ids_of_the_source_itself_are_still_passed_on(sim: Sim) -> None:
    # why: a repeat that stays where it is at another page size is the source's own, however many there are
    data = generate_dataset(450, seed=5)
    for later, earlier in [(150, 10), (260, 20), (370, 30), (420, 40)]:
        data["employees"][later] = dict(data["employees"][earlier])
    sim.source.replace(data)
    with sim.client() as client:
        assert ids(client.list_employees()) == ids(data["employees"])
    # The first (on the page just before its twin) stops the first read and is found again by the second,
    # which checks the others at once and reads on: two reads, not a failed listing.
    assert [r.limit for r in sim.employee_requests() if r.offset == "0"] == ["100", "99", "98"]
