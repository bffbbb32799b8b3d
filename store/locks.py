"""One run per tenant at a time: a lock in the employee database, held for a whole flow run.

The database is the one thing every worker shares, so the lock lives there and holds across
processes and machines, whatever Prefect's own concurrency settings are.

- **PostgreSQL**: a session-level advisory lock (`pg_try_advisory_lock`) on a 64-bit key derived from
  the tenant id, held on a dedicated connection for the whole run. Postgres releases it when that
  connection ends, so a crashed or killed worker never leaves a stale lock behind.
- **SQLite (and any other dialect)**: a row in `tenant_locks` claimed with one atomic upsert that only
  succeeds when no row exists or the existing row's lease has expired. The holder renews its lease
  from a heartbeat thread; a crashed holder stops renewing, and after `lease_seconds` the next run takes
  the lock over (stale lease recovery). Release deletes the row only if the owner token still matches.
  Chosen over `BEGIN IMMEDIATE`, which would hold SQLite's single write lock for the whole run and so
  block every other tenant's writes too.

A second run is refused with `TenantBusyError` (one sentence), or waits for the lock when asked to.

A lock can still lapse under a live run: a process paused for longer than its lease (SQLite), or the
session holding the advisory lock ended by `idle_session_timeout`, `pg_terminate_backend` or a failover
(PostgreSQL). So holding the lock is proven where it matters, by the load, inside its own transaction
(`prove_lock_held`): SQLite renews the lease row only if this run still owns it, and that write keeps
every other writer (a takeover included) out until the load commits; PostgreSQL asks `pg_locks` whether
the very session that took the advisory lock (backend pid and start time) still holds it, just before
the load commits. A run that lost its lock fails with `TenantLockLost`, its load rolled back. The holder
reaches the load through a context variable that `tenant_lock` sets for the body of its `with` (the flow
takes the lock, the load task runs a few calls below it in the same thread and context): no engine or
connection crosses a task boundary, and no stage signature carries a lock.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from sqlalchemy import Connection, Engine, delete, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from domain.errors import ExplainedError
from store.models import TenantLock, utcnow
from store.repo import StoreConflict, abandon_stale_runs

DEFAULT_LEASE_SECONDS = 120.0
POLL_SECONDS = 0.5


class TenantBusyError(StoreConflict):
    """Another run of the tenant holds its lock."""


class TenantLockLost(ExplainedError):
    """The run's lock lapsed before its load committed (a paused process, an ended session): rolled back."""


@dataclass(frozen=True)
class HeldLock:
    """How a holder proves its lock: the lease's owner token (SQLite), or the session holding the advisory
    lock (PostgreSQL: a backend pid alone could be reused by a later session; with its start time it names one)."""

    tenant_id: str
    owner: str
    lease_seconds: float
    backend_pid: int | None = None
    backend_start: datetime | None = None


# The tenant locks this context holds, by tenant (see the module docstring). A thread starts with an empty
# context, so a lock taken in one thread proves nothing for another.
_HELD: ContextVar[Mapping[str, HeldLock]] = ContextVar("provisioning_tenant_locks_held", default=MappingProxyType({}))
_log = logging.getLogger("provisioning.locks")


def advisory_key(tenant_id: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_lock`, the same in every process and on every machine."""
    digest = hashlib.blake2b(f"provisioning-tenant:{tenant_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def busy_message(tenant_id: str) -> str:
    return (
        f"Tenant {tenant_id!r} is already being synced by another run; this run was refused "
        "(to wait for it instead: `provision sync --wait`, or the flow's wait_for_lock parameter)."
    )


@contextmanager
def tenant_lock(
    engine: Engine,
    tenant_id: str,
    *,
    wait: bool = False,
    wait_timeout: float | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    owner: str | None = None,
) -> Iterator[str]:
    """Hold the tenant's lock for the body of the `with`; yields the owner token.

    Raises TenantBusyError at once if another run holds it (`wait=False`), or after `wait_timeout`
    seconds of waiting (`wait=True`; None waits as long as it takes). Once it is held, the tenant's runs
    that cannot be alive any more (a crashed worker's `running` row) are marked `abandoned`
    (store/repo.py `abandon_stale_runs`).
    """
    owner = owner or uuid.uuid4().hex
    if engine.dialect.name == "postgresql":
        with (
            _advisory_lock(engine, tenant_id, wait=wait, wait_timeout=wait_timeout) as (pid, started),
            _holding(HeldLock(tenant_id, owner, lease_seconds, backend_pid=pid, backend_start=started)),
        ):
            abandon_stale_runs(engine, tenant_id)
            yield owner
    else:
        with (
            _lease_lock(engine, tenant_id, owner, wait=wait, wait_timeout=wait_timeout, lease=lease_seconds),
            _holding(HeldLock(tenant_id, owner, lease_seconds)),
        ):
            abandon_stale_runs(engine, tenant_id)
            yield owner


@contextmanager
def _holding(held: HeldLock) -> Iterator[None]:
    """Make `held` known to the load for the body of the `with`."""
    token = _HELD.set(MappingProxyType({**_HELD.get(), held.tenant_id: held}))
    try:
        yield
    finally:
        _HELD.reset(token)


# Is the advisory key still held by the session that took it? A bigint key shows in pg_locks as
# (classid, objid) = its two halves with objsubid 1; advisory locks are per database.
_STILL_HELD = """
SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid::bigint = :hi AND l.objid::bigint = :lo
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid = :pid AND a.backend_start = :started
"""


def prove_lock_held(conn: Connection, tenant_id: str) -> None:
    """Inside the caller's transaction: raise TenantLockLost unless this context still holds the tenant's lock.

    Without a lock taken in this context (a test or the bench loading on its own) there is nothing to prove.
    """
    held = _HELD.get().get(tenant_id)
    if held is None:
        return
    if conn.dialect.name == "postgresql":
        key = advisory_key(tenant_id)
        params = {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}
        still = conn.execute(text(_STILL_HELD), {**params, "pid": held.backend_pid, "started": held.backend_start})
        why = "the database session holding it has ended"
        lost = not still.scalar()
    else:
        # A write, not a read: from here to the commit no other writer (a takeover) can touch the row.
        renewed = conn.execute(
            update(TenantLock)
            .where(TenantLock.tenant_id == tenant_id, TenantLock.owner == held.owner)
            .values(expires_at=utcnow() + timedelta(seconds=held.lease_seconds))
        )
        why = "its lease ran out while the run was paused, and another run has taken it"
        lost = renewed.rowcount != 1
    if lost:
        raise TenantLockLost(
            f"tenant {tenant_id}: this run no longer holds the tenant's lock ({why}), so its load was rolled back "
            "and nothing was written; another run may be syncing the tenant: run the sync again once it has ended"
        )


def _wait_until(acquire: Callable[[], bool], tenant_id: str, *, wait: bool, wait_timeout: float | None) -> None:
    deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
    while not acquire():
        if not wait or (deadline is not None and time.monotonic() >= deadline):
            raise TenantBusyError(busy_message(tenant_id))
        time.sleep(POLL_SECONDS)


@contextmanager
def _advisory_lock(
    engine: Engine, tenant_id: str, *, wait: bool, wait_timeout: float | None
) -> Iterator[tuple[int, datetime]]:
    """Hold the advisory lock; yields the holding session's backend pid and start time."""
    key = advisory_key(tenant_id)
    # Autocommit: the lock is session-level, so the connection must not sit idle in a transaction.
    conn: Connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:

        def acquire() -> bool:
            return bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())

        _wait_until(acquire, tenant_id, wait=wait, wait_timeout=wait_timeout)
        session = conn.execute(
            text("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        ).one()
        try:
            yield int(session.pid), session.backend_start
        finally:
            # A session that has ended (terminated, timed out) took its lock with it: nothing to unlock.
            with suppress(DBAPIError):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()


@contextmanager
def _lease_lock(
    engine: Engine, tenant_id: str, owner: str, *, wait: bool, wait_timeout: float | None, lease: float
) -> Iterator[None]:
    def acquire() -> bool:
        now = utcnow()
        statement = sqlite_insert(TenantLock).values(
            tenant_id=tenant_id, owner=owner, acquired_at=now, expires_at=now + timedelta(seconds=lease)
        )
        statement = statement.on_conflict_do_update(
            index_elements=[TenantLock.tenant_id],
            set_={
                "owner": statement.excluded.owner,
                "acquired_at": statement.excluded.acquired_at,
                "expires_at": statement.excluded.expires_at,
            },
            where=TenantLock.expires_at < now,  # only a lease nobody renewed in time is taken over
        )
        with engine.begin() as conn:
            conn.execute(statement)
            return conn.execute(select(TenantLock.owner).where(TenantLock.tenant_id == tenant_id)).scalar() == owner

    _wait_until(acquire, tenant_id, wait=wait, wait_timeout=wait_timeout)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(lease / 3):
            try:
                with engine.begin() as conn:
                    renewed = conn.execute(
                        update(TenantLock)
                        .where(TenantLock.tenant_id == tenant_id, TenantLock.owner == owner)
                        .values(expires_at=utcnow() + timedelta(seconds=lease))
                    ).rowcount
            except Exception:  # a busy database: the next beat tries again, well inside the lease
                continue
            if renewed != 1:  # the lease ran out (a paused process) and another run took it: nothing to renew
                _log.warning("tenant %s: this run lost its lock to another run; its load will refuse", tenant_id)
                return

    beat = threading.Thread(target=heartbeat, name=f"tenant-lock-{tenant_id}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        with engine.begin() as conn:
            conn.execute(delete(TenantLock).where(TenantLock.tenant_id == tenant_id, TenantLock.owner == owner))


def is_locked(engine: Engine, tenant_id: str) -> bool:
    """Whether a run holds the tenant's lock right now (a look, not a claim: it takes nothing)."""
    if engine.dialect.name == "postgresql":
        key = advisory_key(tenant_id)  # a bigint key shows in pg_locks as (classid, objid) = its two halves
        with engine.connect() as conn:
            held = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                    "AND classid::bigint = :hi AND objid::bigint = :lo"
                ),
                {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF},
            ).scalar()
            return bool(held)
    with engine.connect() as conn:
        expires = conn.execute(select(TenantLock.expires_at).where(TenantLock.tenant_id == tenant_id)).scalar()
    if expires is None:
        return False
    if expires.tzinfo is None:  # SQLite hands back naive datetimes
        expires = expires.replace(tzinfo=utcnow().tzinfo)
    return bool(expires >= utcnow())
