"""One run per tenant at a time: the database lock on its own, then two real flow runs of one tenant.

On SQLite and on PostgreSQL. The second run is refused with one sentence, or waits when asked to, and
never interleaves with the first; another tenant's run is never held up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import Engine, insert, select

from store.locks import TenantBusyError, advisory_key, tenant_lock
from store.models import TenantLock, utcnow
from tests.tables import employee_count, runs_of
from tests.upstreams import TOKEN, Gate, in_one_group, serving, setup_tenant
from tests.wire import person

# ---- the lock on its own ----------------------------------------------------------------------


def test_a_second_holder_of_one_tenant_is_refused_with_one_sentence(engine: Engine) -> None:
    with tenant_lock(engine, "acme"), pytest.raises(TenantBusyError) as refused, tenant_lock(engine, "acme"):
        pytest.fail("two holders of one tenant's lock")
    message = str(refused.value)
    assert "'acme' is already being synced" in message and "\n" not in message


def test_the_lock_is_free_again_once_released_and_after_a_failure(engine: Engine) -> None:
    with tenant_lock(engine, "acme"):
        pass
    with pytest.raises(RuntimeError), tenant_lock(engine, "acme"):
        raise RuntimeError("a stage failed")
    with tenant_lock(engine, "acme"):
        pass


def test_two_tenants_hold_their_locks_side_by_side(engine: Engine) -> None:
    with tenant_lock(engine, "acme"), tenant_lock(engine, "globex"):
        pass


def test_concurrent_holders_never_interleave_and_a_waiting_one_runs_after(engine: Engine) -> None:
    """Four threads of one tenant, all willing to wait: their critical sections follow one another."""
    events: list[str] = []
    inside = threading.Lock()  # only to detect overlap: acquire(blocking=False) fails if another is inside
    overlaps: list[str] = []

    def section(name: str) -> None:
        with tenant_lock(engine, "acme", wait=True, wait_timeout=60):
            if not inside.acquire(blocking=False):
                overlaps.append(name)
            events.append(f"{name}:in")
            threading.Event().wait(0.2)  # hold it long enough for the others to try
            events.append(f"{name}:out")
            inside.release()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(section, ["a", "b", "c", "d"]))
    assert overlaps == []
    assert len(events) == 8
    assert all(events[i].endswith(":in") and events[i + 1] == events[i][:-3] + ":out" for i in range(0, 8, 2))


def test_a_waiting_holder_gives_up_after_its_timeout(engine: Engine) -> None:
    with (
        tenant_lock(engine, "acme"),
        pytest.raises(TenantBusyError),
        tenant_lock(engine, "acme", wait=True, wait_timeout=0.5),
    ):
        pass


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_lock_is_held_by_a_session_and_freed_when_that_session_dies(engine: Engine) -> None:
    """Another process (here: another libpq session) holding the advisory key blocks the tenant; its end frees it.

    A worker that crashes mid-run drops its connection, so its lock goes with it: nothing stale remains.
    """
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    other = psycopg.connect(dsn, autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s)", (advisory_key("acme"),))
    with pytest.raises(TenantBusyError), tenant_lock(engine, "acme"):
        pass
    with tenant_lock(engine, "globex"):
        pass
    other.close()  # the "crash"
    # The server ends the session's backend (and its locks) just after the client hangs up.
    with tenant_lock(engine, "acme", wait=True, wait_timeout=10):
        pass


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_lease_of_a_crashed_holder_is_taken_over_once_expired(engine: Engine) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(TenantLock),
            [
                {"tenant_id": "acme", "owner": "crashed", "acquired_at": now, "expires_at": now - timedelta(seconds=1)},
                {"tenant_id": "globex", "owner": "alive", "acquired_at": now, "expires_at": now + timedelta(hours=1)},
            ],
        )
    with tenant_lock(engine, "acme") as owner, engine.connect() as conn:
        assert conn.execute(select(TenantLock.owner).where(TenantLock.tenant_id == "acme")).scalar() == owner
    with pytest.raises(TenantBusyError), tenant_lock(engine, "globex"):
        pass
    with engine.connect() as conn:  # released: the row is gone; the live lease of the other owner stays
        assert conn.execute(select(TenantLock.tenant_id)).scalars().all() == ["globex"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_lease_is_renewed_while_held(engine: Engine) -> None:
    with tenant_lock(engine, "acme", lease_seconds=1.5):
        threading.Event().wait(3)  # twice the lease: only the heartbeat keeps it
        with pytest.raises(TenantBusyError), tenant_lock(engine, "acme"):
            pass


# ---- two real flow runs of one tenant ---------------------------------------------------------


@pytest.fixture
def gated_source(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """Tenants acme and globex on one source of five people, its first employee request held at the gate."""
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    gate = Gate()
    people = [person(f"u{i}", f"p{i}@acme.example") for i in range(5)]
    with serving(in_one_group(people), wrap=gate.around) as upstream:
        for tenant in ("acme", "globex"):
            setup_tenant(engine, upstream, ["g"], tenant=tenant)
        yield gate
        gate.open.set()


@pytest.mark.usefixtures("prefect_api")
def test_a_second_flow_run_of_a_busy_tenant_is_refused_and_recorded(engine: Engine, gated_source: Gate) -> None:
    from flows.sync_tenant import sync_tenant

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(sync_tenant, "acme")
        assert gated_source.entered.wait(60), "the first run never reached the source"
        with pytest.raises(TenantBusyError, match="already being synced"):
            sync_tenant("acme")
        other = sync_tenant("globex")  # another tenant is not held up by acme's run
        gated_source.open.set()
        assert first.result(timeout=120)["counts"]["created"] == 5
    assert other["counts"]["created"] == 5
    assert sorted(runs_of(engine, "acme")) == [("refused", "lock"), ("succeeded", None)]
    assert employee_count(engine, "acme") == 5


@pytest.mark.usefixtures("prefect_api")
def test_a_flow_run_that_waits_for_the_lock_runs_after_the_first_and_sees_its_result(
    engine: Engine, gated_source: Gate
) -> None:
    from flows.sync_tenant import sync_tenant

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(sync_tenant, "acme")
        assert gated_source.entered.wait(60)
        second = pool.submit(sync_tenant, "acme", wait_for_lock=True)
        threading.Event().wait(1)  # give the second run time to reach the lock while the first holds it
        assert not second.done()
        gated_source.open.set()
        a, b = first.result(timeout=120), second.result(timeout=120)
    # Not interleaved: the second run read the table after the first had written it.
    assert a["counts"]["created"] == 5
    assert (b["counts"]["created"], b["counts"]["unchanged"]) == (0, 5)
