"""Benchmark of the per-tenant sync, run by hand (never in CI).

    uv run python bench/sync_bench.py --users 1000,10000,100000 --db postgres --latency-ms 0
    uv run python bench/sync_bench.py --users 100000 --db sqlite,postgres --latency-ms 0,30 --readme

Each (size, database, latency) runs in a fresh child process, so peak RSS is that run's own. The child
serves the simulator from another process over real HTTP, starts Prefect before the clock starts,
and measures through the real `sync_tenant` flow:

1. the initial sync, 2. a re-sync with no change (three times; the median is reported), 3. a re-sync
   with 1% of users changed (a quarter each: email, name, disabled, removed),

with the wall time of the `sync_tenant(...)` call, the flow run's own duration as Prefect records it
(it ends before the call returns: the flow engine then joins its heartbeat thread, which sleeps in
one-second steps), wall time per stage (each stage's call, whether a Prefect task or not), employee
rows written (rows whose updated_at moved), and the floors measured in the same run on the same data: a
raw COPY (SQLite: one executemany) of the same employee rows, a set-based no-change merge of them, and a
plain sequential fetch of the same pages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scratch import scratch_database  # bench/ is the script's own folder, first on sys.path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
CONNECTION = "conn-bench"
NO_CHANGE_REPEATS = 3


# ---- the child: one measured run --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def simulator_process(arguments: str, *, start_timeout: float = 120) -> Iterator[str]:
    """The simulator in a process of its own, `run_simulator_command(port=..., <arguments>)` (the dataset, the
    connection, the token, the latency), until the block ends; yields its base URL once it accepts connections.
    bench/memory_bench.py starts its generated tenants through it too."""
    port = _free_port()
    code = f"from simulator.serve import run_simulator_command; run_simulator_command(port={port}, {arguments})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _simulator(dataset_file: Path, latency_ms: float) -> Any:
    return simulator_process(
        f"dataset={str(dataset_file)!r}, connection_id={CONNECTION!r}, token={TOKEN!r}, latency_ms={latency_ms}"
    )


def _write(path: Path, dataset: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataset, ensure_ascii=False))
    tmp.replace(path)


def change_one_percent(dataset: dict[str, Any], seed: int) -> int:
    """Change 1% of the users (a quarter each: email, name, disabled, removed); returns how many."""
    rng = random.Random(seed)
    active = [e for e in dataset["employees"] if e["employment_status"] == "ACTIVE"]
    picked = rng.sample(active, max(4, len(dataset["employees"]) // 100))
    quarter = len(picked) // 4
    for e in picked[:quarter]:
        for mail in e["emails"]:
            mail["email"] = "changed." + mail["email"]
    for e in picked[quarter : 2 * quarter]:
        e["first_name"] = e["first_name"] + "-Marie"
        e["name"] = f"{e['first_name']} {e['last_name']}"
    for e in picked[2 * quarter : 3 * quarter]:
        e["employment_status"] = "INACTIVE"
    removed = {e["id"] for e in picked[3 * quarter : 4 * quarter]}
    dataset["employees"] = [e for e in dataset["employees"] if e["id"] not in removed]
    for group in dataset["groups"]:
        group["user_ids"] = [u for u in group.get("user_ids", []) if u not in removed]
    return 4 * quarter


def _source_reloaded(base_url: str) -> None:
    """Page once through the changed source, so the simulator has re-read its dataset file and re-encoded
    the records (it caches each record's encoding per field selection as it serves it) before the clock runs.

    That work is the simulator's, not the sync's: left in, it made a 1% re-sync's extract take twice as
    long as a no-change one's, while the initial sync pays it as part of the real first read.
    """
    import httpx

    from sources.unified import EMPLOYEE_FIELDS, GROUP_FIELDS

    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as http:
        for kind, fields in (("employee", EMPLOYEE_FIELDS), ("group", GROUP_FIELDS)):
            offset = 0
            while True:
                response = http.get(
                    f"/hris/{CONNECTION}/{kind}", params={"limit": 100, "offset": offset, "fields": fields}
                )
                response.raise_for_status()
                n = len(response.json())
                offset += n
                if n < 100:
                    break


# Seconds per stage of the run in progress, from pipeline.Progress.step (wrapped by _time_stages): the same
# clock whether a stage runs as a Prefect task or as a plain function inside the flow run. Runs before
# 2026-11-29 19:40 took them from Prefect's task run durations, when every stage was a task.
STAGE_SECONDS: dict[str, float] = {}


def _time_stages() -> None:
    from pipeline.run import Progress

    step = Progress.step

    def timed(self: Progress, stage: str, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return step(self, stage, *args, **kwargs)
        finally:
            STAGE_SECONDS[stage] = STAGE_SECONDS.get(stage, 0.0) + time.perf_counter() - start

    Progress.step = timed  # type: ignore[method-assign]


def _flow_run_seconds(flow_run_id: str) -> float:
    """The flow run's own duration, as Prefect recorded it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(uuid.UUID(flow_run_id))
    if not (flow_run.start_time and flow_run.end_time):
        raise RuntimeError(f"flow run {flow_run_id} has no start or end time: did it run?")
    return (flow_run.end_time - flow_run.start_time).total_seconds()


def _measured_sync(engine: Any, tenant: str) -> dict[str, Any]:
    from sqlalchemy import text

    from flows.sync_tenant import sync_tenant

    with engine.connect() as conn:
        before = conn.execute(
            text("SELECT max(updated_at) FROM employees WHERE tenant_id = :t"), {"t": tenant}
        ).scalar()
    STAGE_SECONDS.clear()
    start = time.perf_counter()
    result = sync_tenant(tenant, trigger="backfill", override_guard=True)
    wall = time.perf_counter() - start
    stages = dict(STAGE_SECONDS)
    with engine.connect() as conn:
        since = " AND updated_at > :b" if before is not None else ""
        written = conn.execute(
            text(f"SELECT count(*) FROM employees WHERE tenant_id = :t{since}"), {"t": tenant, "b": before}
        ).scalar()
        flow_run_id = conn.execute(text("SELECT flow_run_id FROM runs WHERE id = :r"), {"r": result["run_id"]}).scalar()
    run_s = _flow_run_seconds(flow_run_id)
    return {
        "wall_s": wall,
        "run_s": run_s,
        "rows_written": int(written or 0),
        "counts": result["counts"],
        "stages_s": stages,
    }


def _median_sync(engine: Any, tenant: str, repeats: int) -> dict[str, Any]:
    """The run of median wall time among `repeats` runs against an unchanged source (this VM's speed
    wanders by a third from minute to minute); rows written are summed over all of them."""
    runs = sorted((_measured_sync(engine, tenant) for _ in range(repeats)), key=lambda r: r["wall_s"])
    median = dict(runs[len(runs) // 2])
    median["rows_written"] = sum(r["rows_written"] for r in runs)
    median["all_wall_s"] = [r["wall_s"] for r in runs]
    return median


def _floors(engine: Any, tenant: str, base_url: str) -> dict[str, float]:
    """The same rows and pages, moved the plainest way this machine allows."""
    import httpx
    import polars as pl
    from sqlalchemy import text

    floors: dict[str, float] = {}
    start = time.perf_counter()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        offset = 0
        while True:
            page = http.get(f"/hris/{CONNECTION}/employee", params={"limit": 100, "offset": offset}).json()
            offset += len(page)
            if len(page) < 100:
                break
    floors["page_fetch_s"] = time.perf_counter() - start

    cols = (
        "tenant_id, email, email_norm, first_name, last_name, display_name, employment_status, source_user_id, "
        "status, created_at, updated_at"
    )
    with engine.connect() as conn:
        rows = pl.DataFrame(
            [tuple(r) for r in conn.execute(text(f"SELECT {cols} FROM employees WHERE tenant_id = :t"), {"t": tenant})],
            schema=[c.strip() for c in cols.split(",")],
            orient="row",
        )
    rows = rows.with_columns(pl.lit("bench-floor").alias("tenant_id"))
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('bench-floor', 'floor', CURRENT_TIMESTAMP)")
        )
    start = time.perf_counter()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            dbapi = conn.connection.driver_connection
            with dbapi.cursor() as cur, cur.copy(f"COPY employees ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(rows.write_csv(include_header=False))
        else:
            marks = ", ".join(f":{c.strip()}" for c in cols.split(","))
            conn.execute(text(f"INSERT INTO employees ({cols}) VALUES ({marks})"), rows.to_dicts())
    floors["raw_copy_s"] = time.perf_counter() - start

    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TEMPORARY TABLE merge_floor (email_norm TEXT, first_name TEXT, last_name TEXT, status TEXT)")
        )
        stage = rows.select("email_norm", "first_name", "last_name", "status")
        if engine.dialect.name == "postgresql":
            dbapi = conn.connection.driver_connection
            with dbapi.cursor() as cur, cur.copy("COPY merge_floor FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(stage.write_csv(include_header=False))
        else:
            conn.execute(
                text("INSERT INTO merge_floor VALUES (:email_norm, :first_name, :last_name, :status)"), stage.to_dicts()
            )
        conn.execute(
            text(
                "UPDATE employees SET first_name = s.first_name, last_name = s.last_name, status = s.status "
                "FROM merge_floor AS s WHERE employees.tenant_id = 'bench-floor' "
                "AND employees.email_norm = s.email_norm "
                "AND (employees.first_name IS DISTINCT FROM s.first_name "
                "OR employees.last_name IS DISTINCT FROM s.last_name "
                "OR employees.status IS DISTINCT FROM s.status)"
            )
        )
        conn.execute(text("DROP TABLE merge_floor"))
    floors["no_change_merge_s"] = time.perf_counter() - start
    return floors


def bench_tenant(database_url: str, base_url: str) -> Any:
    """This process set up as the benches run the real flow: the employee database and the token in the
    environment, Prefect's temporary API started (so that its start-up is outside every clock), and tenant
    `bench` connected to the simulator at `base_url`, syncing all users. bench/memory_bench.py sets up alike."""
    os.environ["PROVISIONING_DATABASE_URL"] = database_url
    os.environ["UNIFIED_API_TOKEN"] = TOKEN
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from prefect import flow

    import settings.allocator  # noqa: F401  (as the product's entry points: before anything imports polars)
    from store.db import make_engine
    from store.repo import add_tenant, connect, select_groups

    @flow(name="bench-warm-up")
    def warm_up() -> None:  # starts Prefect's temporary API before the clock runs
        return None

    warm_up()
    engine = make_engine()
    add_tenant(engine, "bench")
    connect(engine, "bench", provider="entra", connection_id=CONNECTION, base_url=base_url)
    select_groups(engine, "bench", [], all_users=True)
    return engine


def child(users: int, db: str, latency_ms: float, seed: int) -> dict[str, Any]:
    from simulator.generator import generate_dataset

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dataset = generate_dataset(users, seed)
        source_file = tmp / "source.json"
        _write(source_file, dataset)
        with scratch_database(db, tmp) as url, _simulator(source_file, latency_ms) as base_url:
            engine = bench_tenant(url, base_url)
            _time_stages()

            result: dict[str, Any] = {"users": users, "db": db, "latency_ms": latency_ms}
            result["initial"] = _measured_sync(engine, "bench")
            result["no_change"] = _median_sync(engine, "bench", NO_CHANGE_REPEATS)
            result["changed_users"] = change_one_percent(dataset, seed)
            _write(source_file, dataset)
            _source_reloaded(base_url)
            result["one_percent"] = _measured_sync(engine, "bench")
            result["floors"] = _floors(engine, "bench", base_url)
            result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            engine.dispose()
            return result


# ---- the parent: runs children, prints and records -----------------------------------------------


def _row(r: dict[str, Any]) -> str:
    i, n, c, f = r["initial"], r["no_change"], r["one_percent"], r["floors"]
    load = i["stages_s"].get("load", 0.0)
    return (
        f"| {r['users']:,} | {r['db']} | {r['latency_ms']:g} | {i['wall_s']:.2f} | {load:.2f} | {f['raw_copy_s']:.2f} "
        f"| {n['wall_s']:.2f} | {n['run_s']:.2f} | {n['rows_written']} | {c['wall_s']:.2f} "
        f"| {c['rows_written']} / {r['changed_users']} "
        f"| {i['stages_s'].get('extract', 0.0):.2f} | {f['page_fetch_s']:.2f} "
        f"| {f['no_change_merge_s']:.2f} | {r['peak_rss_mb']:.0f} |"
    )


HEADER = (
    "| users | db | latency ms | initial s | load s | COPY floor s | no-change s | no-change run s | no-change rows "
    "| 1% s | 1% rows / changed | extract s | page-fetch floor s | merge floor s | peak RSS MB |\n"
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _stages_table(results: list[dict[str, Any]]) -> str:
    from pipeline.run import STAGES

    stages = list(STAGES)
    lines = ["| users | db | latency ms | phase | " + " | ".join(stages) + " |", "|---" * (4 + len(stages)) + "|"]
    for r in results:
        for phase in ("initial", "no_change", "one_percent"):
            s = r[phase]["stages_s"]
            lines.append(
                f"| {r['users']:,} | {r['db']} | {r['latency_ms']:g} | {phase} | "
                + " | ".join(f"{s.get(name, 0.0):.2f}" for name in stages)
                + " |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="1000,10000,100000")
    parser.add_argument("--db", default="postgres", help="sqlite, postgres or both, comma-separated")
    parser.add_argument("--latency-ms", default="0")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--readme", action="store_true", help="append the results to bench/README.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = child(int(args.users), args.db, float(args.latency_ms), args.seed)
        print("RESULT " + json.dumps(result))
        return

    results = []
    for latency in args.latency_ms.split(","):
        for db in args.db.split(","):
            for users in args.users.split(","):
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--users",
                    users,
                    "--db",
                    db,
                    "--latency-ms",
                    latency,
                    "--seed",
                    str(args.seed),
                ]
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                    raise SystemExit(f"run failed: users={users} db={db} latency={latency}")
                result = json.loads(line[len("RESULT ") :])
                results.append(result)
                print(HEADER.splitlines()[0] if len(results) == 1 else "", end="\n" if len(results) == 1 else "")
                print(_row(result), flush=True)
    report = (
        f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}\n\n"
        f"`uv run python bench/sync_bench.py --users {args.users} --db {args.db} --latency-ms {args.latency_ms}`\n\n"
        f"{HEADER}\n"
        + "\n".join(_row(r) for r in results)
        + "\n\nSeconds per stage (each stage from call to return, as pipeline.Progress runs it):\n\n"
        + _stages_table(results)
        + "\n"
    )
    print(report)
    if args.readme:
        with (ROOT / "bench" / "README.md").open("a") as fh:
            fh.write(report)


if __name__ == "__main__":
    main()
