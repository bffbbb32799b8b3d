"""One run per tenant at a time: the database lock on its own, then two real flow runs of one tenant.

On SQLite and on PostgreSQL. The second run is refused with one sentence, or waits when asked to, and
never interleaves with the first; another tenant's run is never held up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import polars as pl
import psycopg
import pytest
from sqlalchemy import Engine, func, insert, select, text, update

from domain.errors import ExplainedError
from store.locks import TenantBusyError, advisory_key, tenant_lock
from store.models import RunChange, TenantLock, utcnow
from store.repo import add_tenant, connect, select_groups
from tests.frames import source_user, users
from tests.runs import snapshot_of, sync_snapshot
from tests.tables import employee_count, last_run, runs_of
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


# ---- the load proves it still holds the lock (issue 14, item 2) --------------------------------------------
# A run's lock can lapse under it: on SQLite a paused process stops renewing its lease and another run takes
# it over; on PostgreSQL the session holding the advisory lock can end (idle_session_timeout,
# pg_terminate_backend, a failover). The load then must not write: it checks inside its own transaction.

FIVE = snapshot_of(users(*[source_user(f"u{i}", f"p{i}@acme.example") for i in range(5)]))


def _lock_backend(engine: Engine) -> int:
    """The backend pid of the session holding an advisory lock in this database (there is one: acme's)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
        )


def _terminate(engine: Engine, pid: int) -> None:
    """End that session from another one, and wait until the server has dropped it (and so its locks)."""
    # Autocommit: inside one transaction pg_stat_activity is a snapshot taken at its first read.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        deadline = time.monotonic() + 10
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar():
            assert time.monotonic() < deadline, "the terminated session did not end"
            time.sleep(0.05)


def test_a_load_under_the_held_lock_writes(engine: Engine) -> None:
    add_tenant(engine, "acme")
    with tenant_lock(engine, "acme"):
        sync_snapshot(engine, "acme", FIVE)
    assert employee_count(engine, "acme") == 5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_load_fails_once_a_paused_runs_lease_was_taken_over(engine: Engine) -> None:
    add_tenant(engine, "acme")
    taken, done = threading.Event(), threading.Event()

    def second_run() -> None:  # another process's run, in a context of its own
        with tenant_lock(engine, "acme"):
            taken.set()
            done.wait(30)

    with tenant_lock(engine, "acme", lease_seconds=600) as first:  # a long lease: no heartbeat during the test
        # The pause: the process stopped for longer than its lease, so no heartbeat renewed it...
        with engine.begin() as conn:
            conn.execute(update(TenantLock).values(expires_at=utcnow() - timedelta(seconds=1)))
        second = threading.Thread(target=second_run)
        second.start()  # ...and another run took the lease over meanwhile.
        try:
            assert taken.wait(10), "the second run did not take the expired lease"
            with pytest.raises(ExplainedError, match=r"tenant acme: .*no longer holds the tenant's lock") as failed:
                sync_snapshot(engine, "acme", FIVE)  # the first run wakes up and loads
            assert "\n" not in str(failed.value) and "rolled back" in str(failed.value)
        finally:
            done.set()
            second.join()
        with engine.connect() as conn:  # the first holder's release left the second's row alone
            assert conn.execute(select(TenantLock.owner)).scalars().all() in ([], [first])
    assert employee_count(engine, "acme") == 0
    assert _run_changes(engine) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_heartbeat_notices_a_lease_taken_over_and_stops_renewing(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="provisioning.locks")
    with tenant_lock(engine, "acme", lease_seconds=0.6):  # a beat every 0.2 s
        with engine.begin() as conn:
            conn.execute(update(TenantLock).values(owner="the-next-run"))
        deadline = time.monotonic() + 10
        while "tenant acme: this run lost its lock to another run" not in caplog.text:
            assert time.monotonic() < deadline, "the heartbeat did not notice"
            time.sleep(0.05)
    with engine.connect() as conn:  # neither the heartbeat nor the release touched the next run's row
        assert conn.execute(select(TenantLock.owner)).scalars().all() == ["the-next-run"]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_load_fails_once_the_lock_session_was_terminated(engine: Engine) -> None:
    add_tenant(engine, "acme")
    with tenant_lock(engine, "acme"):
        _terminate(engine, _lock_backend(engine))  # pg_terminate_backend on the lock's session
        with pytest.raises(ExplainedError, match=r"tenant acme: .*no longer holds the tenant's lock") as failed:
            sync_snapshot(engine, "acme", FIVE)
        assert "\n" not in str(failed.value) and "rolled back" in str(failed.value)
    assert employee_count(engine, "acme") == 0
    assert _run_changes(engine) == 0
    with tenant_lock(engine, "acme"):  # the lock is free: the session that held it is gone
        pass


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_load_fails_when_another_session_holds_the_lock_after_the_first_ended(engine: Engine) -> None:
    add_tenant(engine, "acme")
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with tenant_lock(engine, "acme"):
        _terminate(engine, _lock_backend(engine))
        with psycopg.connect(dsn, autocommit=True) as other:  # the next run took the tenant
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key("acme"),)).fetchone() == (True,)
            with pytest.raises(ExplainedError, match="no longer holds the tenant's lock"):
                sync_snapshot(engine, "acme", FIVE)
    assert employee_count(engine, "acme") == 0


def _run_changes(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(RunChange)).scalar_one())


@pytest.mark.usefixtures("prefect_api")
def test_a_flow_run_whose_lock_lapsed_before_the_load_fails_in_load_and_writes_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole flow: the lock lapses while the run matches (SQLite: another run takes the lease over;
    Postgres: the lock's session is terminated); the load refuses, the run row says failed in load."""
    import flows.sync_tenant

    add_tenant(engine, "acme")
    connect(engine, "acme", provider="entra", connection_id="conn-1", base_url="http://127.0.0.1:9")  # never read
    select_groups(engine, "acme", [], all_users=True)
    real_match = flows.sync_tenant.TASKS.match

    def match_then_lose_the_lock(tenant: str, users: pl.DataFrame, held: pl.Series) -> pl.DataFrame:
        if engine.dialect.name == "postgresql":
            _terminate(engine, _lock_backend(engine))
        else:
            with engine.begin() as conn:
                conn.execute(update(TenantLock).values(owner="the-next-run", expires_at=utcnow() + timedelta(hours=1)))
        return real_match(tenant, users, held)

    tasks = replace(flows.sync_tenant.TASKS, extract=lambda _config: FIVE, match=match_then_lose_the_lock)
    monkeypatch.setattr(flows.sync_tenant, "TASKS", tasks)
    with pytest.raises(ExplainedError, match=r"tenant acme: .*no longer holds the tenant's lock"):
        flows.sync_tenant.sync_tenant("acme")
    assert runs_of(engine, "acme") == [("failed", "load")]
    assert "no longer holds the tenant's lock" in last_run(engine, "acme").error
    assert employee_count(engine, "acme") == 0
    assert _run_changes(engine) == 0
