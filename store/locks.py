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
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Connection, Engine, delete, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from store.models import TenantLock, utcnow
from store.repo import StoreConflict

DEFAULT_LEASE_SECONDS = 120.0
POLL_SECONDS = 0.5


class TenantBusyError(StoreConflict):
    """Another run of the tenant holds its lock."""


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
    seconds of waiting (`wait=True`; None waits as long as it takes).
    """
    owner = owner or uuid.uuid4().hex
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, tenant_id, wait=wait, wait_timeout=wait_timeout):
            yield owner
    else:
        with _lease_lock(engine, tenant_id, owner, wait=wait, wait_timeout=wait_timeout, lease=lease_seconds):
            yield owner


def _wait_until(acquire: Callable[[], bool], tenant_id: str, *, wait: bool, wait_timeout: float | None) -> None:
    deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
    while not acquire():
        if not wait or (deadline is not None and time.monotonic() >= deadline):
            raise TenantBusyError(busy_message(tenant_id))
        time.sleep(POLL_SECONDS)


@contextmanager
def _advisory_lock(engine: Engine, tenant_id: str, *, wait: bool, wait_timeout: float | None) -> Iterator[None]:
    key = advisory_key(tenant_id)
    # Autocommit: the lock is session-level, so the connection must not sit idle in a transaction.
    conn: Connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:

        def acquire() -> bool:
            return bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())

        _wait_until(acquire, tenant_id, wait=wait, wait_timeout=wait_timeout)
        try:
            yield
        finally:
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
                    conn.execute(
                        update(TenantLock)
                        .where(TenantLock.tenant_id == tenant_id, TenantLock.owner == owner)
                        .values(expires_at=utcnow() + timedelta(seconds=lease))
                    )
            except Exception:  # a busy database: the next beat tries again, well inside the lease
                continue

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
