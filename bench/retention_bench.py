"""Benchmark of the retention pass (store/retention.py) over a large run history, run by hand (never in CI).

    uv run python bench/retention_bench.py --rows 10000000 --db postgres --readme
    uv run python bench/retention_bench.py --rows 1000000 --db sqlite

It builds one tenant's history in a throwaway database: `--rows` run_changes rows in runs spread evenly over
the last year (every 75th run a large one of 100,000 rows, as an initial sync of a large tenant writes; the others
2,000 rows), written server-side (generate_series on Postgres; one INSERT ... SELECT per run on SQLite) rather than
through the load, which would take hours. A fifth of the rows name nobody (group joins), the rest carry names and
emails as the load records them. The same tenant has 20,000 real employees from a real first sync.

Then it measures, with the default period of 90 days:

- the pass: wall time, the planning query, rows scrubbed per second, and each batch's transaction (the longest is
  how long a write can wait behind it on SQLite; on Postgres the batches only hold row locks on old rows);
- a concurrent sync of the same tenant: its load stage (1% of its employees renamed each time) three times
  before the pass, then over and over while the pass runs, and on Postgres a sample every 20 ms of any session of
  the database waiting on a lock;
- the next day's pass, which plans only what has expired since (`runs.scrubbed_at`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scratch import scratch_database  # bench/ is the script's own folder, first on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TENANT = "bench"
EMPLOYEES = 20_000
BIG_EVERY, BIG_ROWS, SMALL_ROWS = 75, 100_000, 2_000
SPAN_DAYS = 365

# What each synthetic row holds, by seq: a join (no personal data), a creation (every new_* value), or an update
# of last and display name. The same values on both dialects.
_ROW_SQL = """
    {run_id}, {seq}, 'bench', ({seq} % 20000) + 1, 'u' || ({seq} % 20000),
    CASE {seq} % 5 WHEN 0 THEN 'joined' WHEN 1 THEN 'created' ELSE 'updated' END,
    CASE WHEN {seq} % 5 = 0 THEN 'g-1' END,
    NULL,
    CASE {seq} % 5 WHEN 0 THEN NULL WHEN 1 THEN 'email,first_name,last_name,display_name'
         ELSE 'last_name,display_name' END,
    NULL,
    CASE WHEN {seq} % 5 = 1 THEN 'person' || ({seq} % 20000) || '@bench.example' END,
    NULL,
    CASE WHEN {seq} % 5 = 1 THEN 'Vorname' END,
    CASE WHEN {seq} % 5 > 1 THEN 'Altname' || ({seq} % 97) END,
    CASE WHEN {seq} % 5 > 0 THEN 'Neuname' || ({seq} % 89) END,
    CASE WHEN {seq} % 5 > 1 THEN 'Vorname Altname' || ({seq} % 97) END,
    CASE WHEN {seq} % 5 > 0 THEN 'Vorname Neuname' || ({seq} % 89) END,
    NULL,
    CASE WHEN {seq} % 5 = 1 THEN 'synced' END
"""
_COLUMNS = (
    "run_id, seq, tenant_id, employee_id, source_user_id, action, group_id, reason, changed_fields, old_email, "
    "new_email, old_first_name, new_first_name, old_last_name, new_last_name, old_display_name, new_display_name, "
    "old_status, new_status"
)


def _people(version: int) -> list[dict[str, Any]]:
    """The tenant's source users as Unified.to sends them; `version` renames 1% of them (a different 1% each)."""
    people = []
    for i in range(EMPLOYEES):
        last = f"Nachname{i}" + (f"-v{version}" if version and i % 100 == version % 100 else "")
        people.append(
            {
                "id": f"u{i}",
                "first_name": "Vorname",
                "last_name": last,
                "name": f"Vorname {last}",
                "emails": [{"email": f"person{i}@bench.example", "type": "WORK"}],
                "employment_status": "ACTIVE",
            }
        )
    return people


def _sync(engine: Any, version: int, loads: list[float]) -> None:
    """One sync of the tenant without a source server (the pipeline on a snapshot), its load timed."""
    from pipeline import PLAIN, Selection, load_planned, plan_snapshot
    from sources.normalize import normalize
    from store.repo import finish_run, start_run

    def timed_load(*args: Any) -> int:
        started = time.perf_counter()
        written = PLAIN.load(*args)
        loads.append(time.perf_counter() - started)
        return written

    stages = replace(PLAIN, load=timed_load)
    run_id = start_run(engine, TENANT, trigger="cli", parameters={}, flow_run_id=None, dry_run=False)
    snapshot = normalize(_people(version), [])
    planned = plan_snapshot(
        TENANT, snapshot, Selection(all_users=True), override_guard=True, engine=engine, stages=stages
    )
    planned = load_planned(TENANT, run_id, planned, dry_run=False, stages=stages)
    finish_run(engine, run_id, outcome="succeeded", counts=planned.counts)


def _layout(rows: int) -> list[int]:
    """Run sizes adding up to about `rows`: every BIG_EVERY-th run large, the others small."""
    sizes: list[int] = []
    total = 0
    while total < rows:
        size = BIG_ROWS if (len(sizes) + 1) % BIG_EVERY == 0 else SMALL_ROWS
        size = min(size, rows - total)
        sizes.append(size)
        total += size
    return sizes


def _build_history(engine: Any, rows: int) -> tuple[int, int, float]:
    """The synthetic history: (runs, rows, seconds to build it)."""
    from sqlalchemy import insert, text

    from store.models import Run

    sizes = _layout(rows)
    now = datetime.now(UTC)
    started = time.perf_counter()
    ids = [f"{i:08d}-0000-4000-8000-{i:012d}" for i in range(1, len(sizes) + 1)]
    with engine.begin() as conn:
        conn.execute(
            insert(Run),
            [
                {
                    "id": run_id,
                    "tenant_id": TENANT,
                    "trigger": "schedule",
                    "parameters": {},
                    "dry_run": False,
                    "started_at": now - timedelta(days=SPAN_DAYS) + timedelta(days=SPAN_DAYS) * (i / len(sizes)),
                    "ended_at": now - timedelta(days=SPAN_DAYS) + timedelta(days=SPAN_DAYS) * (i / len(sizes)),
                    "outcome": "succeeded",
                    "counts": {},
                }
                for i, run_id in enumerate(ids)
            ],
        )
        if engine.dialect.name == "postgresql":
            conn.execute(text("CREATE TEMPORARY TABLE bench_sizes (id VARCHAR(36), n INTEGER)"))
            conn.execute(
                text("INSERT INTO bench_sizes VALUES (:id, :n)"),
                [{"id": r, "n": n} for r, n in zip(ids, sizes, strict=True)],
            )
            conn.execute(
                text(
                    f"INSERT INTO run_changes ({_COLUMNS}) SELECT "
                    + _ROW_SQL.format(run_id="b.id", seq="s")
                    + " FROM bench_sizes AS b CROSS JOIN LATERAL generate_series(1, b.n) AS s"
                )
            )
        else:
            for run_id, n in zip(ids, sizes, strict=True):
                conn.execute(
                    text(
                        "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < :n) "
                        f"INSERT INTO run_changes ({_COLUMNS}) SELECT "
                        + _ROW_SQL.format(run_id=":run", seq="x")
                        + " FROM s"
                    ),
                    {"n": n, "run": run_id},
                )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    return len(sizes), sum(sizes), time.perf_counter() - started


def _lock_watch(engine: Any, stop: threading.Event, seen: list[list[str]]) -> None:
    """Every 20 ms: which lock each session of this database waits on, if any (Postgres only)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        while not stop.wait(0.02):
            waiting = conn.execute(
                text(
                    "SELECT wait_event FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalars()
            seen.append([str(w) for w in waiting])
            conn.commit()


def run(db: str, rows: int, batch_rows: int) -> dict[str, Any]:
    from store.db import make_engine
    from store.repo import add_tenant
    from store.retention import cutoff_of, due_rows, due_runs, scrub_expired

    with tempfile.TemporaryDirectory() as folder, scratch_database(db, Path(folder)) as url:
        os.environ["PROVISIONING_DATABASE_URL"] = url  # the load stage finds its engine by URL
        engine = make_engine(url)
        add_tenant(engine, TENANT)
        _sync(engine, 0, [])  # the tenant's employees, through a real first sync
        runs, built_rows, build_seconds = _build_history(engine, rows)
        cutoff = cutoff_of(engine, TENANT)
        due = due_rows(engine, TENANT, cutoff)
        planning = time.perf_counter()
        due_runs(engine, TENANT, cutoff)
        planning_seconds = time.perf_counter() - planning

        baseline: list[float] = []
        for version in (1, 2, 3):
            _sync(engine, version, baseline)

        during: list[float] = []
        batches: list[float] = []
        waits: list[list[str]] = []
        result: dict[str, Any] = {}
        stop = threading.Event()

        def retention() -> None:
            started = time.perf_counter()
            done = scrub_expired(engine, TENANT, batch_rows=batch_rows, on_batch=lambda _b, _r, s: batches.append(s))
            result.update(done=done, seconds=time.perf_counter() - started)
            stop.set()

        watcher = None
        if engine.dialect.name == "postgresql":
            watcher = threading.Thread(target=_lock_watch, args=(engine, stop, waits), daemon=True)
            watcher.start()
        worker = threading.Thread(target=retention)
        worker.start()
        version = 4
        while not stop.is_set():
            _sync(engine, version, during)
            version += 1
        worker.join()
        if watcher is not None:
            watcher.join()
        again = time.perf_counter()
        next_day = scrub_expired(engine, TENANT, batch_rows=batch_rows)
        next_day_seconds = time.perf_counter() - again
        done = result["done"]
        engine.dispose()
        ordered = sorted(batches)
        return {
            "db": db,
            "runs": runs,
            "rows": built_rows,
            "build_s": build_seconds,
            "due_runs": done.runs,
            "due_rows": due,
            "scrubbed": done.rows,
            "batches": done.batches,
            "batch_rows": batch_rows,
            "pass_s": result["seconds"],
            "planning_s": planning_seconds,
            "rows_per_s": done.rows / result["seconds"] if result["seconds"] else 0.0,
            "batch_p50_ms": 1000 * statistics.median(ordered),
            "batch_p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
            "batch_max_ms": 1000 * ordered[-1],
            "load_before_s": statistics.median(baseline),
            "loads_during": len(during),
            "load_during_median_s": statistics.median(during) if during else float("nan"),
            "load_during_max_s": max(during) if during else float("nan"),
            "lock_wait_samples": (sum(1 for w in waits if w), len(waits)) if waits else None,
            "lock_waits_on": sorted({event for sample in waits for event in sample}),
            "next_day_s": next_day_seconds,
            "next_day_rows": next_day.rows,
        }


def _markdown(results: list[dict[str, Any]], command: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"## Retention, {when}, {platform.node() or 'host'}, {cores} cores, Python {platform.python_version()}",
        "",
        f"`{command}`",
        "",
        "| db | history rows | runs | due rows (named) | scrubbed | batches | pass s | planning s | rows/s "
        "| batch p50 / p99 / max ms | sync load before s | loads during | load during median / max s "
        "| lock-wait samples | next day s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|---:|",
    ]
    for r in results:
        waits = "-" if r["lock_wait_samples"] is None else f"{r['lock_wait_samples'][0]} of {r['lock_wait_samples'][1]}"
        if r["lock_waits_on"]:
            waits += f" ({', '.join(r['lock_waits_on'])})"
        lines.append(
            f"| {r['db']} | {r['rows']:,} | {r['runs']:,} | {r['due_rows']:,} | {r['scrubbed']:,} | {r['batches']:,} "
            f"| {r['pass_s']:.1f} | {r['planning_s']:.2f} | {r['rows_per_s']:,.0f} "
            f"| {r['batch_p50_ms']:.0f} / {r['batch_p99_ms']:.0f} / {r['batch_max_ms']:.0f} "
            f"| {r['load_before_s']:.2f} | {r['loads_during']} "
            f"| {r['load_during_median_s']:.2f} / {r['load_during_max_s']:.2f} | {waits} | {r['next_day_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="run_changes rows of the history")
    parser.add_argument("--db", default="postgres", help="postgres, sqlite, or both comma-separated")
    parser.add_argument("--batch-rows", type=int, default=10_000, help="rows per transaction")
    parser.add_argument("--readme", action="store_true", help="append the results to bench/README.md")
    args = parser.parse_args()
    results = []
    for db in args.db.split(","):
        print(f"{db}: building {args.rows:,} rows and measuring ...", file=sys.stderr, flush=True)
        results.append(run(db, args.rows, args.batch_rows))
        print(results[-1], file=sys.stderr, flush=True)
    command = "uv run python bench/retention_bench.py " + " ".join(sys.argv[1:])
    text = _markdown(results, command.replace(" --readme", ""))
    print(text)
    if args.readme:
        with (ROOT / "bench" / "README.md").open("a", encoding="utf-8") as readme:
            readme.write("\n\n" + text)


if __name__ == "__main__":
    main()
