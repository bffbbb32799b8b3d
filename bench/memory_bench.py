"""Memory of the per-tenant sync in one long-lived process, run by hand (never in CI).

    uv run python bench/memory_bench.py --users 300000 --runs 5 --db postgres
    uv run python bench/memory_bench.py --users 1000000 --runs 2 --db postgres

The simulator generates and serves the tenant in another process over real HTTP (the measured process
never holds the generated dataset); this process starts Prefect, then runs the real `sync_tenant` flow
`--runs` times in a row against the unchanged source: the initial sync, then no-change re-syncs. After each
run it prints the run's wall time, the peak RSS during the run, the peak RSS of the process so far
(`getrusage` maxrss) and the RSS left after the run (VmRSS in /proc/self/status), then the issue-16 targets
met or not. `--stages` also prints each stage's seconds, peak RSS and the RSS left after it; `--settle` (for
finding what holds memory, not for the figures: it changes them) then also lets each stage's freed memory go
back (polars' allocator returns freed pages only once it allocates again a while later; glibc's heap only on
`malloc_trim`) and prints the RSS still held, before the next stage starts.

The peak of one run is measured by resetting the kernel's high-water mark before the run (`5` written to
/proc/self/clear_refs, Linux 4.0+), which resets getrusage's maxrss too: the process peak printed is the
largest of the windows so measured, Prefect's start-up included.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import tempfile
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scratch import scratch_database  # bench/ is the script's own folder, first on sys.path
from sync_bench import CONNECTION, TOKEN, bench_tenant, simulator_process

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024

# Issue 16, target 2: (users, what is held to it).
TARGET_ONE_RUN_MB = 600  # 300k users: the peak of one run in a fresh process
TARGET_FIVE_RUNS_MB = 700  # 300k users: the process peak after five runs
TARGET_MILLION_MB = 2048  # 1M users: the process peak over the initial sync and a no-change one
TARGET_MILLION_INITIAL_S = 120.0  # 1M users: the initial sync's wall time


# ---- measuring memory -----------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


class Meter:
    """Peak RSS per window (a run, a stage) and of the whole process, from the kernel's high-water mark."""

    def __init__(self) -> None:
        self.process_peak_kb = 0
        self.resettable = True

    def window_peak_kb(self) -> int:
        """The peak since the last reset (the process peak where the mark cannot be reset)."""
        peak = max(_status_kb("VmHWM"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        self.process_peak_kb = max(self.process_peak_kb, peak)
        return peak

    def reset(self) -> None:
        self.window_peak_kb()  # what the window held counts towards the process peak first
        if not self.resettable:
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.resettable = False

    @staticmethod
    def current_kb() -> int:
        return _status_kb("VmRSS")


METER = Meter()
STAGES: list[tuple[str, float, float, float, float]] = []  # (stage, s, peak MB, RSS after MB, held MB) this run


def _settled_kb() -> int:
    """RSS once what is free has gone back: idle past polars' decay time (dirty_decay_ms 500, muzzy 1000, which
    jemalloc applies when it next allocates), then allocate through polars, then glibc's malloc_trim."""
    import ctypes

    import polars as pl

    for _ in range(3):
        time.sleep(0.6)
        pl.select(pl.int_range(0, 100_000).sum())
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return Meter.current_kb()


def _meter_stages(settle: bool) -> None:
    """Record each stage's seconds, peak RSS and RSS left, through pipeline.Progress.step."""
    from pipeline.run import Progress

    step = Progress.step

    def metered(self: Progress, stage: str, *args: Any, **kwargs: Any) -> Any:
        before = METER.window_peak_kb()
        METER.reset()
        start = time.perf_counter()
        try:
            return step(self, stage, *args, **kwargs)
        finally:
            seconds = time.perf_counter() - start
            peak = METER.window_peak_kb()
            after = METER.current_kb()
            held = _settled_kb() if settle else after
            STAGES.append((stage, seconds, peak / 1024, after / 1024, held / 1024))
            # the run's window goes on: carry what it held before this stage as a floor of its peak
            RUN_FLOOR_KB[0] = max(RUN_FLOOR_KB[0], before, peak)

    Progress.step = metered  # type: ignore[method-assign]


RUN_FLOOR_KB = [0]  # the run's peak so far, across the per-stage resets


# ---- the simulator ----------------------------------------------------------------------------


def _simulator(users: int, seed: int, latency_ms: float) -> AbstractContextManager[str]:
    """The simulator serving a generated tenant (entra, as bench/sync_bench.py's) from its own process."""
    arguments = f"users={users}, seed={seed}, connection_id={CONNECTION!r}, token={TOKEN!r}, latency_ms={latency_ms}"
    return simulator_process(arguments, start_timeout=900)  # a million users take minutes to generate when busy


# ---- the runs -----------------------------------------------------------------------------------


def _written(engine: Any, tenant: str, since: Any) -> int:
    from sqlalchemy import text

    where = " AND updated_at > :b" if since is not None else ""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(f"SELECT count(*) FROM employees WHERE tenant_id = :t{where}"), {"t": tenant, "b": since}
            ).scalar_one()
        )


def _last_update(engine: Any, tenant: str) -> Any:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT max(updated_at) FROM employees WHERE tenant_id = :t"), {"t": tenant}).scalar()


def run(
    users: int, runs: int, db: str, latency_ms: float, seed: int, stages: bool, settle: bool
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_database(db, Path(tmp)) as url,
        _simulator(users, seed, latency_ms) as base_url,
    ):
        engine = bench_tenant(url, base_url)
        from flows.sync_tenant import sync_tenant

        if stages or settle:
            _meter_stages(settle)
        print(
            f"started: RSS {METER.current_kb() / 1024:.0f} MB, peak {METER.window_peak_kb() / 1024:.0f} MB", flush=True
        )
        for n in range(1, runs + 1):
            since = _last_update(engine, "bench")
            STAGES.clear()
            METER.reset()
            RUN_FLOOR_KB[0] = 0
            start = time.perf_counter()
            result = sync_tenant("bench", trigger="backfill", override_guard=True)
            wall = time.perf_counter() - start
            run_peak = max(METER.window_peak_kb(), RUN_FLOOR_KB[0])
            row = {
                "run": n,
                "phase": "initial" if n == 1 else "no change",
                "wall_s": wall,
                "outcome": result["outcome"],
                "written": _written(engine, "bench", since),
                "run_peak_mb": run_peak / 1024,
                "process_peak_mb": METER.process_peak_kb / 1024,
                "rss_after_mb": METER.current_kb() / 1024,
                "stages": list(STAGES),
            }
            results.append(row)
            print(_row(row), flush=True)
            for stage, seconds, peak, after, held in row["stages"]:
                line = f"    {stage:<15} {seconds:7.2f} s  peak {peak:6.0f} MB  after {after:6.0f} MB"
                print(line + (f"  held {held:6.0f} MB" if settle else ""), flush=True)
        engine.dispose()
    return results


# ---- the report ---------------------------------------------------------------------------------

HEADER = (
    "| run | phase | wall s | rows written | peak RSS of the run MB | process peak RSS MB | RSS after MB |\n"
    "|---:|---|---:|---:|---:|---:|---:|"
)


def _row(r: dict[str, Any]) -> str:
    return (
        f"| {r['run']} | {r['phase']} | {r['wall_s']:.1f} | {r['written']:,} | {r['run_peak_mb']:.0f} "
        f"| {r['process_peak_mb']:.0f} | {r['rss_after_mb']:.0f} |"
    )


def verdicts(users: int, results: list[dict[str, Any]]) -> list[str]:
    """Issue 16's targets for this size, each met or not."""

    def said(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines: list[str] = []
    first, last = results[0], results[-1]
    if users < 1_000_000:  # the targets set for 300k users
        lines.append(
            f"one run ≤ {TARGET_ONE_RUN_MB} MB: {first['run_peak_mb']:.0f} MB, "
            f"{said(first['run_peak_mb'] <= TARGET_ONE_RUN_MB)}"
        )
        if len(results) >= 5:
            lines.append(
                f"after {len(results)} runs ≤ {TARGET_FIVE_RUNS_MB} MB: {last['process_peak_mb']:.0f} MB, "
                f"{said(last['process_peak_mb'] <= TARGET_FIVE_RUNS_MB)}"
            )
    else:
        lines.append(
            f"process peak ≤ {TARGET_MILLION_MB} MB: {last['process_peak_mb']:.0f} MB, "
            f"{said(last['process_peak_mb'] <= TARGET_MILLION_MB)}"
        )
        lines.append(
            f"initial ≤ {TARGET_MILLION_INITIAL_S:.0f} s: {first['wall_s']:.1f} s, "
            f"{said(first['wall_s'] <= TARGET_MILLION_INITIAL_S)}"
        )
    if len(results) >= 3:
        # growth: the no-change runs' peaks and the RSS they leave, second no-change run against the last
        grown = results[-1]["run_peak_mb"] - results[1]["run_peak_mb"]
        left = results[-1]["rss_after_mb"] - results[1]["rss_after_mb"]
        lines.append(f"growth across the no-change runs: peak {grown:+.0f} MB, RSS after {left:+.0f} MB")
    lines.append("no-change runs wrote no row: " + said(all(r["written"] == 0 for r in results[1:])))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=5, help="the initial sync, then no-change re-syncs")
    parser.add_argument("--db", default="postgres", choices=["postgres", "sqlite"])
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stages", action="store_true", help="also print each stage's peak RSS")
    parser.add_argument("--settle", action="store_true", help="also the RSS each stage leaves held (slower)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    load = os.getloadavg()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
        flush=True,
    )
    print(f"`uv run python bench/memory_bench.py --users {args.users} --runs {args.runs} --db {args.db}`\n")
    print(HEADER, flush=True)
    results = run(args.users, args.runs, args.db, args.latency_ms, args.seed, args.stages, args.settle)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    for line in verdicts(args.users, results):
        print("- " + line)


if __name__ == "__main__":
    main()
