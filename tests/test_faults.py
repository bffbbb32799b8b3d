"""The fault catalog: every upstream fault the simulator can inject, and what a sync does about it.

Transient faults (rate limits, 5xx, slow answers, dropped connections, a source changing while paged)
end in the same employee table as a clean run. Permanent faults (refusals, unreadable payloads, a
listing that misses records on every read) fail the run with one clear reason and leave the table
exactly as it was; an empty listing for a tenant with synced employees is stopped by the guard.

The flow cases run on SQLite: the faults are the upstream's, and the database side of a failing run is
covered on both databases by tests/test_flow.py and tests/test_load*.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from simulator import Fault, FaultPlan, SimulatorSource, create_app, generate_dataset
from simulator.faults import parse_fault_spec
from simulator.serve import running_simulator
from sources import errors
from sources.unified import UnifiedClient
from store.db import make_engine
from store.models import Run
from tests.tables import table
from tests.upstreams import Upstream, setup_tenant
from tests.wire import dataset, group, person

TOKEN = "fault-token-c0ffee"

# ---- the simulator's --fault syntax -------------------------------------------------------------


def test_fault_specs_read_name_count_endpoint_and_offset() -> None:
    assert parse_fault_spec("429x3") == [Fault(status=429, retry_after="1")] * 3
    assert parse_fault_spec("429-bare") == [Fault(status=429)]
    assert parse_fault_spec("503x2@group") == [Fault(status=503, kind="group")] * 2
    assert parse_fault_spec("repeat:300") == [Fault(shift=-1, at_offset=300)]
    assert parse_fault_spec("wrong-totalx*") == [Fault(total_delta=10, sticky=True)]
    assert parse_fault_spec("slow", slow_seconds=5) == [Fault(delay_s=5)]
    assert parse_fault_spec("empty") == [Fault(empty=True, kind="employee")]


@pytest.mark.parametrize("spec", ["teapot", "429x0", "503@users", "x3", ""])
def test_an_unreadable_fault_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_fault_spec(spec)


def test_simulator_help_documents_the_faults_and_a_bad_one_is_one_sentence() -> None:
    from cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["simulator", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for word in ("--fault", "--latency-ms", "--slow-seconds", "429-bare", "drop", "truncate", "repeat", "wrong-total"):
        assert word in result.output
    bad = runner.invoke(app, ["simulator", "--fault", "teapot"])
    assert bad.exit_code == 1
    assert "unknown fault 'teapot'" in bad.output


# ---- the client under each fault, over real HTTP -------------------------------------------------


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[str, SimulatorSource, FaultPlan]]:
    source = SimulatorSource(generate_dataset(250, seed=8))
    faults = FaultPlan()
    with running_simulator(create_app(source, token=TOKEN, faults=faults)) as url:
        yield url, source, faults


@pytest.fixture
def sim(_server: tuple[str, SimulatorSource, FaultPlan]) -> tuple[str, SimulatorSource, FaultPlan]:
    _server[2].clear()
    return _server


def _client(url: str, **kw: Any) -> UnifiedClient:
    options: dict[str, Any] = {
        "base_url": url,
        "token": SecretStr(TOKEN),
        "connection_id": "conn-demo",
        "tenant": "acme",
        "sleep": lambda _s: None,
        "max_attempts": 4,
    }
    return UnifiedClient(**(options | kw))


E = "employee"
# (name, faults, outcome): None = the whole listing, as if nothing happened; else the error it fails with.
CLIENT_CATALOG: list[tuple[str, list[Fault], type[Exception] | None]] = [
    ("429 burst with Retry-After", [Fault(status=429, retry_after="1")] * 3, None),
    ("429 burst without Retry-After", [Fault(status=429)] * 3, None),
    ("5xx burst", [Fault(status=s) for s in (500, 502, 503)], None),
    ("slow answer past the timeout", [Fault(delay_s=1.0, kind=E)], None),
    ("dropped connection", [Fault(drop=True, kind=E)] * 2, None),
    ("repeat (offset drift)", [Fault(shift=-1, at_offset=100, kind=E)], None),
    ("skip (offset drift)", [Fault(shift=1, at_offset=100, kind=E)], None),
    ("short page", [Fault(page_cut=50, at_offset=100, kind=E)], None),
    ("total changes between pages", [Fault(total_delta=3, at_offset=0, kind=E)], None),
    ("no X-Total-Count", [Fault(omit_total=True, sticky=True)], None),
    ("X-Total-Count too low", [Fault(total_delta=-5, sticky=True)], None),
    ("5xx for longer than the retries", [Fault(status=503, sticky=True)], errors.TransientSourceError),
    ("slow for longer than the retries", [Fault(delay_s=1.0, sticky=True)], errors.TransientSourceError),
    ("dropped for longer than the retries", [Fault(drop=True, sticky=True)], errors.TransientSourceError),
    ("drift on every read", [Fault(shift=-1, at_offset=100, sticky=True), Fault(shift=-1, at_offset=99, sticky=True)],
     errors.InconsistentListingError),
    ("X-Total-Count too high on every read", [Fault(total_delta=10, sticky=True)], errors.IncompleteListingError),
    ("401", [Fault(status=401)], errors.SourceAuthError),
    ("403", [Fault(status=403)], errors.SourceAuthError),
    ("404", [Fault(status=404)], errors.SourceNotFoundError),
    ("400", [Fault(status=400)], errors.SourceRequestError),
    ("501", [Fault(status=501)], errors.SourceRequestError),
    ("truncated JSON", [Fault(truncate=True, kind=E)], errors.MalformedPayloadError),
    ("HTML instead of JSON", [Fault(body="<html>502 Bad Gateway</html>", kind=E)], errors.MalformedPayloadError),
    ("an object instead of the array", [Fault(body='{"data": []}', kind=E)], errors.MalformedPayloadError),
    ("an answer over the byte cap (64 MiB)", [Fault(oversize=80 * 2**20, kind=E)], errors.ResponseTooLargeError),
    ("a page longer than the limit", [Fault(overlong=10, kind=E)], errors.MalformedPayloadError),
    ("a source ignoring offset", [Fault(ignore_offset=True, sticky=True, kind=E)], errors.InconsistentListingError),
]  # fmt: skip


@pytest.mark.parametrize(("name", "faults", "outcome"), CLIENT_CATALOG, ids=[c[0] for c in CLIENT_CATALOG])
def test_client_under_each_fault_reads_the_whole_listing_or_fails_with_its_typed_error(
    sim: tuple[str, SimulatorSource, FaultPlan], name: str, faults: list[Fault], outcome: type[Exception] | None
) -> None:
    url, source, plan = sim
    plan.add(*faults)
    with _client(url, timeout=httpx.Timeout(0.5)) as client:
        if outcome is None:
            assert [e["id"] for e in client.list_employees()] == [e["id"] for e in source.current().employee.records]
        else:
            with pytest.raises(outcome) as info:
                client.list_employees()
            assert "tenant acme" in str(info.value) and TOKEN not in str(info.value)


def test_an_empty_listing_is_not_an_error_for_the_client(sim: tuple[str, SimulatorSource, FaultPlan]) -> None:
    # why: "no users" is a valid answer on the wire; the mass-change guard judges it (flow test below)
    url, _source, plan = sim
    plan.add(Fault(empty=True, kind=E))
    with _client(url) as client:
        assert client.list_employees() == []


# ---- the whole flow under each fault -------------------------------------------------------------

PEOPLE = 250  # three pages


def source_a() -> dict[str, Any]:
    people = [person(f"u{i}", f"person{i}@acme.example", "Anna", f"Nummer{i}") for i in range(PEOPLE)]
    return dataset(people, [group("g", "G", [p["id"] for p in people])])


def source_b() -> dict[str, Any]:
    """A few changes after A: an email change, a leaver, someone out of scope, a new hire."""
    data = source_a()
    people = data["employees"]
    people[1]["emails"][0]["email"] = "renamed@acme.example"
    people[2]["employment_status"] = "INACTIVE"
    people.append(person("u-new", "new@acme.example", "Zoë", "Neu"))
    members = [p["id"] for p in people if p["id"] != "u3"]
    return dataset(people, [group("g", "G", members)])


def clean_table_b() -> dict[str, tuple[Any, ...]]:
    """The table a clean sync of A then B leaves (checked against a real clean run below)."""
    rows: dict[str, tuple[Any, ...]] = {}
    for p in source_b()["employees"]:
        email = p["emails"][0]["email"]
        status = "terminated" if p["employment_status"] == "INACTIVE" else "synced"
        rows[email] = (p["first_name"], "non_matching" if p["id"] == "u3" else status, p["id"])
    return rows


@pytest.fixture
def flow_upstream(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, prefect_api: None) -> Iterator[Upstream]:
    import flows.sync_tenant

    monkeypatch.setenv("PROVISIONING_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    # A slow answer must trip the client's timeout within the test, not after 30 s.
    monkeypatch.setattr("tasks.extract.CLIENT_TIMEOUT", httpx.Timeout(1.0))
    # Task-level retries of a transient failure are the orchestration's (tests/test_extract*); here they
    # only need to not wait.
    tasks = flows.sync_tenant.TASKS
    monkeypatch.setattr(
        flows.sync_tenant,
        "TASKS",
        replace(tasks, extract=flows.sync_tenant.extract_task.with_options(retry_delay_seconds=0)),
    )
    source = SimulatorSource(source_a())
    faults = FaultPlan()
    with running_simulator(create_app(source, connection_id="conn-1", token=TOKEN, faults=faults)) as url:
        yield Upstream(source, faults, url)


def sync() -> dict[str, Any]:
    from flows.sync_tenant import sync_tenant

    return sync_tenant("acme")


def synced_once(url: str, upstream: Upstream) -> Engine:
    engine = make_engine(url)
    setup_tenant(engine, upstream, ["g"])
    sync()
    upstream.source.replace(source_b())
    return engine


def last_run(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Run).order_by(Run.started_at.desc())).first()


def test_a_clean_run_leaves_the_reference_table(sqlite_url: str, flow_upstream: Upstream) -> None:
    engine = synced_once(sqlite_url, flow_upstream)
    sync()
    assert table(engine) == clean_table_b()


TRANSIENT = [
    ("429 burst with Retry-After", [Fault(status=429, retry_after="0.2")] * 3),
    ("429 burst without Retry-After", [Fault(status=429)] * 3),
    ("5xx burst", [Fault(status=500), Fault(status=502), Fault(status=503, kind="group"), Fault(status=504)]),
    ("slow answer past the timeout", [Fault(delay_s=1.5, kind=E)]),
    ("dropped connection", [Fault(drop=True, kind=E), Fault(drop=True, kind="group")]),
    ("repeat (offset drift)", [Fault(shift=-1, at_offset=100, kind=E)]),
    ("skip (offset drift)", [Fault(shift=1, at_offset=100, kind=E)]),
    ("short page (a missed page)", [Fault(page_cut=50, at_offset=100, kind=E)]),
    ("total changes between pages", [Fault(total_delta=4, at_offset=0, kind=E)]),
    ("no X-Total-Count", [Fault(omit_total=True, sticky=True)]),
    ("5xx outlasting the client's retries", [Fault(status=503, kind=E)] * 4),
]


@pytest.mark.parametrize(("name", "faults"), TRANSIENT, ids=[t[0] for t in TRANSIENT])
def test_under_a_transient_fault_the_run_ends_with_the_clean_runs_table(
    sqlite_url: str, flow_upstream: Upstream, name: str, faults: list[Fault]
) -> None:
    engine = synced_once(sqlite_url, flow_upstream)
    flow_upstream.faults.add(*faults)
    result = sync()
    assert flow_upstream.faults.pending == 0  # every fault was served
    assert result["outcome"] == "succeeded"
    assert table(engine) == clean_table_b()


PERMANENT: list[tuple[str, list[Fault], type[Exception], str]] = [
    ("401", [Fault(status=401)], errors.SourceAuthError, "refused the API token (401)"),
    ("403", [Fault(status=403)], errors.SourceAuthError, "(403)"),
    ("404", [Fault(status=404)], errors.SourceNotFoundError, "wrong connection id"),
    ("400", [Fault(status=400)], errors.SourceRequestError, "rejected the request"),
    ("501", [Fault(status=501)], errors.SourceRequestError, "does not support"),
    ("truncated JSON", [Fault(truncate=True, kind=E)], errors.MalformedPayloadError, "not JSON"),
    ("HTML instead of JSON", [Fault(body="<html>oops</html>", kind=E)], errors.MalformedPayloadError, "not JSON"),
    ("an object instead of the array", [Fault(body="{}", kind=E)], errors.MalformedPayloadError, "not the array"),
    ("X-Total-Count too high on every read", [Fault(total_delta=10, sticky=True)], errors.IncompleteListingError,
     "missing records on every read"),
    ("5xx on every retry", [Fault(status=503, sticky=True)], errors.TransientSourceError, "still failing"),
    ("drift on every read", [Fault(shift=-1, at_offset=100, sticky=True), Fault(shift=-1, at_offset=99, sticky=True)],
     errors.InconsistentListingError, "different listing on each of 3 reads"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "faults", "error", "reason"), PERMANENT, ids=[p[0] for p in PERMANENT])
def test_under_a_lasting_fault_the_run_fails_with_one_reason_and_the_table_is_as_before(
    sqlite_url: str, flow_upstream: Upstream, name: str, faults: list[Fault], error: type[Exception], reason: str
) -> None:
    engine = synced_once(sqlite_url, flow_upstream)
    before = table(engine)
    flow_upstream.faults.add(*faults)
    with pytest.raises(error, match=reason.replace("(", r"\(").replace(")", r"\)")):
        sync()
    assert table(engine) == before
    run = last_run(engine)
    assert (run.outcome, run.failed_stage) == ("failed", "extract")
    assert reason in run.error and "\n" not in run.error and TOKEN not in run.error


def test_an_empty_employee_list_for_a_tenant_with_users_is_stopped_by_the_guard(
    sqlite_url: str, flow_upstream: Upstream
) -> None:
    # why: keycloak#24669, an empty LDAP answer deleted every federated user; here nothing changes
    from tasks.validate import GuardTripped

    engine = synced_once(sqlite_url, flow_upstream)
    before = table(engine)
    flow_upstream.faults.add(Fault(empty=True, kind=E))
    with pytest.raises(GuardTripped, match="no users"):
        sync()
    assert table(engine) == before
    assert last_run(engine).outcome == "stopped_by_guard"
    sync()  # the source answers again: the next run converges
    assert table(engine) == clean_table_b()
