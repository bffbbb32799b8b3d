"""Retention (design.md, "Data protection"): the names and emails in a tenant's run history are scrubbed once the
run is older than the tenant's period (`tenants.retention_days`, default 90). Actions, changed field names,
statuses, ids, reasons and the runs' counts stay: what happened is kept, not who it was.

Set-based and in bounded batches: a batch is one transaction of one UPDATE over a key range of `run_changes`
((run_id, seq), its primary key) covering at most `batch_rows` rows, either whole runs (small ones, together) or
a seq range of one large run. A running sync of the same tenant only inserts its own run's rows and never waits
on these row locks; on SQLite, where every write takes the one database lock, it waits at most one batch.
A run whose rows are all scrubbed is marked (`runs.scrubbed_at`) in the transaction of its last batch, so the
next day's pass plans only what has expired since, and a pass that was stopped goes on where it left off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session

from store.erase import PERSONAL
from store.models import Run, RunChange, utcnow
from store.repo import get_tenant

BATCH_ROWS = 10_000
# A batch of whole runs names them in an IN list; past this many, a new batch starts however small they are.
MAX_RUNS_PER_BATCH = 500
SCRUBBED_COLUMNS = [f"{side}_{name}" for name in PERSONAL for side in ("old", "new")]


def _personal() -> ColumnElement[bool]:
    """A run_changes row that still holds a name or an email."""
    return or_(*(getattr(RunChange, column).is_not(None) for column in SCRUBBED_COLUMNS))


@dataclass(frozen=True)
class Batch:
    """One transaction's worth: whole runs, or one run's rows with `first <= seq <= last`."""

    run_ids: tuple[str, ...]
    rows: int  # rows of run_changes the batch covers (scrubbed or already clean)
    seqs: tuple[int, int] | None = None
    finishes: tuple[str, ...] = ()  # runs whose last rows this batch covers: marked scrubbed with it


@dataclass
class Scrubbed:
    """What one tenant's pass did (or, in a dry run, would do)."""

    tenant: str
    cutoff: datetime  # runs started before this were due
    runs: int = 0  # runs due
    rows: int = 0  # run_changes rows that lost names and emails (dry run: would lose them)
    batches: int = 0
    longest_batch_seconds: float = 0.0
    batch_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "cutoff": self.cutoff.isoformat(),
            "runs": self.runs,
            "rows": self.rows,
            "batches": self.batches,
            "longest_batch_seconds": round(self.longest_batch_seconds, 4),
        }


def cutoff_of(engine: Engine, tenant_id: str, now: datetime | None = None) -> datetime:
    with Session(engine) as session:
        days = get_tenant(session, tenant_id).retention_days
    return (now or utcnow()) - timedelta(days=days)


def due_runs(engine: Engine, tenant_id: str, cutoff: datetime) -> list[tuple[str, int]]:
    """(run id, rows of run_changes) of the tenant's runs started before `cutoff` and not yet scrubbed, oldest
    first. One grouped query; the load numbers a run's rows 1..n, so the highest seq is its row count."""
    query = (
        select(Run.id, func.coalesce(func.max(RunChange.seq), 0))
        .select_from(Run)
        .outerjoin(RunChange, and_(RunChange.run_id == Run.id, RunChange.tenant_id == tenant_id))
        .where(Run.tenant_id == tenant_id, Run.started_at < cutoff, Run.scrubbed_at.is_(None))
        .group_by(Run.id, Run.started_at)
        .order_by(Run.started_at, Run.id)
    )
    with engine.connect() as conn:
        return [(run_id, int(rows)) for run_id, rows in conn.execute(query)]


def batches(runs: list[tuple[str, int]], batch_rows: int = BATCH_ROWS) -> list[Batch]:
    """The runs cut into batches of at most `batch_rows` rows: small runs together, a large one by seq ranges."""
    out: list[Batch] = []
    group: list[str] = []
    grouped = 0

    def flush() -> None:
        nonlocal group, grouped
        if group:
            out.append(Batch(run_ids=tuple(group), rows=grouped, finishes=tuple(group)))
        group, grouped = [], 0

    for run_id, rows in runs:
        if rows > batch_rows:
            flush()
            for first in range(1, rows + 1, batch_rows):
                last = min(first + batch_rows - 1, rows)
                out.append(
                    Batch(
                        run_ids=(run_id,),
                        rows=last - first + 1,
                        seqs=(first, last),
                        # the last range reaches past the highest seq seen: rows numbered otherwise are not missed
                        finishes=(run_id,) if last == rows else (),
                    )
                )
            continue
        if grouped + rows > batch_rows or len(group) >= MAX_RUNS_PER_BATCH:
            flush()
        group.append(run_id)
        grouped += rows
    flush()
    return out


def scrub_batch(engine: Engine, tenant_id: str, batch: Batch, now: datetime | None = None) -> int:
    """One batch in one transaction: its rows lose names and emails, its finished runs are marked. Returns the
    rows that held any (rows scrubbed before, by an erasure or an earlier pass, are not counted again)."""
    where = [RunChange.tenant_id == tenant_id, RunChange.run_id.in_(batch.run_ids), _personal()]
    if batch.seqs is not None:
        first, last = batch.seqs
        # the last range of a run is open-ended, so a run numbered past its count loses nothing to retention
        where.append(RunChange.seq >= first)
        if not batch.finishes:
            where.append(RunChange.seq <= last)
    with engine.begin() as conn:
        result = conn.execute(update(RunChange).where(*where).values({c: None for c in SCRUBBED_COLUMNS}))
        if batch.finishes:
            conn.execute(
                update(Run)
                .where(Run.tenant_id == tenant_id, Run.id.in_(batch.finishes))
                .values(scrubbed_at=now or utcnow())
            )
        return int(result.rowcount or 0)


def due_rows(engine: Engine, tenant_id: str, cutoff: datetime) -> int:
    """Rows a pass would scrub now (a dry run's answer), in one query."""
    due = select(Run.id).where(Run.tenant_id == tenant_id, Run.started_at < cutoff, Run.scrubbed_at.is_(None))
    query = (
        select(func.count())
        .select_from(RunChange)
        .where(RunChange.tenant_id == tenant_id, RunChange.run_id.in_(due), _personal())
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def scrub_expired(
    engine: Engine,
    tenant_id: str,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_rows: int = BATCH_ROWS,
    on_batch: Callable[[Batch, int, float], None] | None = None,
) -> Scrubbed:
    """Scrub the tenant's run history older than its retention period, batch by batch (`on_batch(batch, rows,
    seconds)` after each). A dry run counts the rows and writes nothing."""
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    now = now or utcnow()
    cutoff = cutoff_of(engine, tenant_id, now)
    runs = due_runs(engine, tenant_id, cutoff)
    done = Scrubbed(tenant=tenant_id, cutoff=cutoff, runs=len(runs))
    if dry_run:
        done.rows = due_rows(engine, tenant_id, cutoff)
        return done
    for batch in batches(runs, batch_rows):
        started = time.perf_counter()
        rows = scrub_batch(engine, tenant_id, batch, now)
        seconds = time.perf_counter() - started
        done.rows += rows
        done.batches += 1
        done.batch_seconds.append(seconds)
        done.longest_batch_seconds = max(done.longest_batch_seconds, seconds)
        if on_batch is not None:
            on_batch(batch, rows, seconds)
    return done
