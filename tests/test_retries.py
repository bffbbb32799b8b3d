"""Retries where they help: the extract task re-runs on transient upstream errors only, and the client's
retries, its re-reads of a listing and the task's re-runs are bounded together: the bounds that
tasks/extract.py documents are checked here against the requests the simulator saw and the sleeps the
client asked for, not by redoing the arithmetic."""

from __future__ import annotations

import gc
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from prefect import flow
from pydantic import SecretStr

from simulator.app import SeenRequest, create_app
from simulator.faults import Fault, FaultPlan
from simulator.generator import generate_dataset
from simulator.serve import running_simulator
from simulator.source import SimulatorSource
from sources.errors import InconsistentListingError, SourceAuthError, TransientSourceError
from tasks import extract as ex
from tests.wire import dataset, group, person

TOKEN = "retry-test-token-19c2"


@flow
def extract_now(config: ex.SourceConfig) -> Any:
    """The extract task inside a flow run, as the sync runs it, without the waits between task runs."""
    return ex.extract_task.with_options(retry_delay_seconds=0)(config)


class Upstream:
    def __init__(self, source: SimulatorSource, faults: FaultPlan, app: object, config: ex.SourceConfig) -> None:
        self.source, self.faults, self.app, self.config = source, faults, app, config

    def employee_requests(self) -> list[SeenRequest]:
        return [r for r in self.app.state.simulator.requests if r.kind == "employee"]  # type: ignore[attr-defined]


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    faults = FaultPlan()
    people = [person(f"u{i}", f"p{i}@acme.example") for i in range(3)]
    source = SimulatorSource(dataset(people, [group("g", "G", ["u0", "u1", "u2"])]))
    app = create_app(source, connection_id="conn-1", token=TOKEN, faults=faults)
    with running_simulator(app) as url:
        config = ex.SourceConfig(
            tenant="acme", source="unified", provider="entra", connection_id="conn-1", base_url=url
        )
        yield Upstream(source, faults, app, config)


@pytest.mark.usefixtures("prefect_api")
def test_extract_task_is_rerun_when_the_client_gave_up_on_a_transient_error(upstream: Upstream) -> None:
    # Every client attempt of the first task run fails: the client raises TransientSourceError.
    upstream.faults.add(*[Fault(status=503, kind="employee") for _ in range(ex.CLIENT_ATTEMPTS)])
    snapshot = extract_now(upstream.config)
    assert snapshot.users.height == 3
    assert upstream.faults.pending == 0
    assert len(upstream.employee_requests()) == ex.CLIENT_ATTEMPTS + 1  # one more: the task's second run


@pytest.mark.usefixtures("prefect_api")
def test_extract_task_fails_at_once_on_a_permanent_error(upstream: Upstream) -> None:
    upstream.faults.add(Fault(status=401, kind="employee"))
    with pytest.raises(SourceAuthError, match="401"):
        extract_now(upstream.config)
    assert len(upstream.employee_requests()) == 1


# ---- the retry budget, as the simulator saw it ---------------------------------------------------


def test_one_request_sleeps_at_most_REQUEST_SLEEP_SECONDS_between_its_attempts(upstream: Upstream) -> None:
    # why: the worst case: every attempt is told to come back in an hour (the client caps each wait)
    upstream.faults.add(Fault(status=429, retry_after="3600", kind="employee", sticky=True))
    sleeps: list[float] = []
    client = ex.unified_client(upstream.config, SecretStr(TOKEN), sleep=sleeps.append)  # as the extract builds it
    with client, pytest.raises(TransientSourceError, match=f"after {ex.CLIENT_ATTEMPTS} attempts"):
        client.list_employees()
    assert len(upstream.employee_requests()) == ex.CLIENT_ATTEMPTS
    assert sum(sleeps) == ex.REQUEST_SLEEP_SECONDS


@pytest.mark.usefixtures("prefect_api")
def test_a_request_that_never_succeeds_is_tried_FAILING_REQUEST_ATTEMPTS_times_in_all(upstream: Upstream) -> None:
    # why: a source that is down: the listing fails with its first request, so there is nothing to re-read
    upstream.faults.add(Fault(status=503, retry_after="0", kind="employee", sticky=True))
    with pytest.raises(TransientSourceError, match="503"):
        extract_now(upstream.config)
    offsets = [r.offset for r in upstream.employee_requests()]
    assert offsets == ["0"] * ex.FAILING_REQUEST_ATTEMPTS


@pytest.mark.usefixtures("prefect_api")
def test_a_page_is_tried_at_most_PAGE_ATTEMPTS_times_when_reads_never_agree(upstream: Upstream) -> None:
    """The worst case the budget multiplies out: every request of every read fails until its last attempt,
    and every read, once whole, disagrees with the one before (offset drift on page 1 at both page sizes
    the client alternates between), so the client reads again, and the task runs again, as often as it may.
    """
    upstream.source.replace(generate_dataset(150, seed=3))  # two pages: offset 0 and the page that drifts
    for _run in range(ex.TASK_RUNS):
        for read in range(ex.CLIENT_READS):
            size = 100 if read % 2 == 0 else 99  # every other read is one record shorter a page
            for offset, answer in ((0, Fault()), (size, Fault(shift=-1))):
                failure = Fault(status=503, retry_after="0", kind="employee", at_offset=offset)
                upstream.faults.add(
                    *[failure] * (ex.CLIENT_ATTEMPTS - 1), replace(answer, kind="employee", at_offset=offset)
                )
    with pytest.raises(InconsistentListingError, match=f"different listing on each of {ex.CLIENT_READS} reads"):
        extract_now(upstream.config)
    assert upstream.faults.pending == 0  # every scripted answer was asked for: the worst case did happen
    per_page = Counter(int(r.offset or 0) // int(r.limit or 100) for r in upstream.employee_requests())
    assert per_page == {0: ex.PAGE_ATTEMPTS, 1: ex.PAGE_ATTEMPTS}


# ---- the collector during an extract -------------------------------------------------------------


def test_cycles_are_collected_in_larger_batches_during_an_extract_and_as_before_after(upstream: Upstream) -> None:
    seen: list[tuple[bool, int]] = []
    original = ex.normalize

    def spy(employees: Any, groups: Any, **options: Any) -> Any:
        seen.append((gc.isenabled(), gc.get_threshold()[0]))
        return original(employees, groups, **options)

    before = gc.get_threshold()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ex, "normalize", spy)
        ex.extract(upstream.config)
        upstream.faults.add(Fault(status=401, kind="employee"))
        with pytest.raises(SourceAuthError):
            ex.extract(upstream.config)
    assert seen == [(True, ex.EXTRACT_GC_THRESHOLD)]  # the collector is never switched off
    assert gc.get_threshold() == before  # also after the failed extract


def test_a_cycle_made_by_another_thread_during_an_extract_is_collected_before_the_extract_ends() -> None:
    # why: the safety argument of gc_batched: other tenants' threads keep their cycle collection
    collected = threading.Event()

    class Node:
        other: Any = None

    def other_tenant() -> None:
        a, b = Node(), Node()
        a.other, b.other = b, a  # garbage only the cyclic collector can free
        weakref.finalize(a, collected.set)
        del a, b
        _churn = [[] for _ in range(20 * ex.EXTRACT_GC_THRESHOLD)]  # allocations, as any busy thread makes

    with ex.gc_batched():
        thread = threading.Thread(target=other_tenant)
        thread.start()
        thread.join()
        assert collected.is_set()


def test_overlapping_extracts_restore_the_threshold_once_the_last_ends_and_as_it_was() -> None:
    before = gc.get_threshold()
    entered, release = threading.Event(), threading.Event()

    def other_tenant() -> None:
        with ex.gc_batched():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other_tenant)
    thread.start()
    try:
        assert entered.wait(10)
        with ex.gc_batched():
            assert gc.get_threshold()[0] == ex.EXTRACT_GC_THRESHOLD
        assert gc.get_threshold()[0] == ex.EXTRACT_GC_THRESHOLD  # the other tenant's extract still runs
    finally:
        release.set()
        thread.join()
    assert gc.get_threshold() == before
    for custom in (10 * ex.EXTRACT_GC_THRESHOLD, 0):  # a higher threshold is kept; 0 (collection off) stays 0
        gc.set_threshold(custom, *before[1:])
        try:
            with ex.gc_batched():
                assert gc.get_threshold()[0] == custom
            assert gc.get_threshold()[0] == custom
        finally:
            gc.set_threshold(*before)
