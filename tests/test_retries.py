"""Retries where they help: the extract task re-runs on transient upstream errors only, and the client's
and the task's retries are bounded together (tasks/extract.py has the arithmetic)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow
from pydantic import SecretStr

from simulator.app import create_app
from simulator.faults import Fault, FaultPlan
from simulator.serve import running_simulator
from simulator.source import SimulatorSource
from sources.errors import SourceAuthError
from tasks import extract as ex
from tests.wire import dataset, group, person

TOKEN = "retry-test-token-19c2"


@flow
def extract_now(config: ex.SourceConfig) -> Any:
    """The extract task inside a flow run, as the sync runs it, without the waits between task runs."""
    return ex.extract_task.with_options(retry_delay_seconds=0)(config)


def test_client_and_task_retries_are_bounded_together() -> None:
    config = ex.SourceConfig(tenant="acme", source="unified", provider="entra", connection_id="c", base_url="http://x")
    with ex.unified_client(config, SecretStr("t")) as client:  # the client exactly as the extract builds it
        per_request = client.max_attempts * (ex.CLIENT_CONNECT_TIMEOUT + ex.CLIENT_READ_TIMEOUT)
        per_request += client.max_retry_wait()
        assert client.max_attempts == ex.CLIENT_ATTEMPTS
    assert per_request == ex.REQUEST_SECONDS
    attempts = ex.TASK_RETRIES + 1
    assert attempts * per_request + sum(ex.TASK_RETRY_DELAYS) == ex.MAX_EXTRACT_SECONDS
    assert len(ex.TASK_RETRY_DELAYS) == ex.TASK_RETRIES
    # The multiplication stays small and a persistently failing source is given up on well inside an hour.
    assert attempts * ex.CLIENT_ATTEMPTS <= 12
    assert ex.MAX_EXTRACT_SECONDS <= 15 * 60
    # The task's declared retries are the ones the arithmetic counts.
    assert ex.extract_task.retries == ex.TASK_RETRIES
    assert ex.extract_task.retry_delay_seconds == ex.TASK_RETRY_DELAYS


class Upstream:
    def __init__(self, faults: FaultPlan, app: object, config: ex.SourceConfig) -> None:
        self.faults, self.app, self.config = faults, app, config

    def employee_requests(self) -> int:
        return sum(1 for r in self.app.state.simulator.requests if r.kind == "employee")  # type: ignore[attr-defined]


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    faults = FaultPlan()
    people = [person(f"u{i}", f"p{i}@acme.example") for i in range(3)]
    app = create_app(
        SimulatorSource(dataset(people, [group("g", "G", ["u0", "u1", "u2"])])),
        connection_id="conn-1",
        token=TOKEN,
        faults=faults,
    )
    with running_simulator(app) as url:
        config = ex.SourceConfig(
            tenant="acme", source="unified", provider="entra", connection_id="conn-1", base_url=url
        )
        yield Upstream(faults, app, config)


@pytest.mark.usefixtures("prefect_api")
def test_extract_task_is_rerun_when_the_client_gave_up_on_a_transient_error(upstream: Upstream) -> None:
    # Every client attempt of the first task run fails: the client raises TransientSourceError.
    upstream.faults.add(*[Fault(status=503, kind="employee") for _ in range(ex.CLIENT_ATTEMPTS)])
    snapshot = extract_now(upstream.config)
    assert snapshot.users.height == 3
    assert upstream.faults.pending == 0
    assert upstream.employee_requests() == ex.CLIENT_ATTEMPTS + 1  # one more: the task's second run


@pytest.mark.usefixtures("prefect_api")
def test_extract_task_fails_at_once_on_a_permanent_error(upstream: Upstream) -> None:
    upstream.faults.add(Fault(status=401, kind="employee"))
    with pytest.raises(SourceAuthError, match="401"):
        extract_now(upstream.config)
    assert upstream.employee_requests() == 1


def test_a_failed_runs_summary_says_what_was_not_done() -> None:
    from tasks.report import failure_markdown

    early = failure_markdown(tenant="acme", run_id="r1", stage="extract", reason="tenant acme: 401")
    assert "failed in stage extract" in early and "tenant acme: 401" in early
    assert "Nothing was changed" in early and "Not done: flatten, filter, validate, match, load, report." in early
    late = failure_markdown(tenant="acme", run_id="r1", stage="report", reason="unexpected OSError")
    assert "Nothing was changed" not in late  # the load had committed: saying otherwise would be a lie
    assert "changes were applied" in late and "provision run show r1" in late


def test_the_garbage_collector_is_paused_during_an_extract_and_restored_after(upstream: Upstream) -> None:
    seen: list[bool] = []
    original = ex.normalize

    def spy(employees: Any, groups: Any) -> Any:
        seen.append(gc.isenabled())
        return original(employees, groups)

    assert gc.isenabled()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ex, "normalize", spy)
        ex.extract(upstream.config)
        upstream.faults.add(Fault(status=401, kind="employee"))
        with pytest.raises(SourceAuthError):
            ex.extract(upstream.config)
    assert seen == [False]
    assert gc.isenabled()  # also after the failed extract


def test_nested_gc_pauses_restore_the_collector_once_and_as_it_was() -> None:
    with ex.gc_paused():
        with ex.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()
    try:
        with ex.gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
