"""Benchmark of a backfill over many tenants (issue 16, target 1), run by hand (never in CI).

    uv run python bench/many_tenants.py --tenants 1000 --users 200 --max-concurrent 8
    uv run python bench/many_tenants.py --tenants 100 --users 2000 --max-concurrent 8
    uv run python bench/many_tenants.py --tenants 100 --users 200 --max-concurrent 4 --through-deployment

Everything runs on this machine, each part in a process of its own, as in production:

- a Prefect server (`prefect server start`, a temporary PREFECT_HOME, its own database: a scratch PostgreSQL
  one, or SQLite with `--prefect-db sqlite`), with the settings README's "Operating it on a Prefect server"
  gives it (`SERVER_SETTINGS`; `--server-defaults` starts it with Prefect's defaults instead, to compare);
- the Unified.to simulator over real HTTP, one process serving one generated source of `--users` users
  under one connection id per tenant (the simulator serves every connection the same data, and a connection
  belongs to one tenant: the cheapest faithful way to have N tenants, since each run reads, normalizes,
  matches and loads its own copy of the same people);
- the employee database: a scratch PostgreSQL database (bench/scratch.py), migrated, with `--tenants`
  tenants `t0000`... connected to their connection and syncing all users.

Then the clock runs around one command, `provision sync-all --max-concurrent K --json`, in a process of its
own (imports and all, as an operator would type it): every tenant's initial sync. With
`--through-deployment`, a process worker of a `provisioning` pool runs each tenant's flow run instead (the
`sync-tenant` deployment of prefect.yaml), started by `sync_all(deployment=...)`: one new Python process per
tenant, as the pool's workers do.

It prints, beside the target (1,000 tenants in at most 300 s): the wall time and seconds per tenant, the
outcome of every tenant (and the error of each that did not succeed), how long each tenant's run took
(the run rows' start to finish, median and 90th percentile), how many ran at once (at most, and on
average over the backfill), the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scratch import scratch_database  # bench/ is the script's own folder, first on sys.path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
TARGET_SECONDS_PER_TENANT = 0.3  # issue 16: 1,000 tenants in at most 5 minutes
POOL = "provisioning"  # prefect.yaml's work pool
# The product's Prefect server settings, as README's "Operating it on a Prefect server" exports them before
# `prefect server start` (tests/test_many_tenants.py keeps the two the same). Prefect records task runs from
# the state events their clients send, by default one event per database transaction: eight task runs of three
# events each per tenant. In batches of up to 100 events (a task run's state shows in the UI up to a second
# later) the server spends about a third less CPU per tenant, its database more than half less (bench/README.md).
SERVER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A background process in its own process group, stopped with all its children at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue


def _wait_listening(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"nothing answers at {url} after {timeout} s:\n{log.read_text()[-3000:]}")


# The simulator's process: one generated source, one connection per tenant.
_SIMULATOR = """
import sys
from simulator.app import create_app
from simulator.generator import generate_dataset
from simulator.serve import serve
port, users, tenants, token = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
app = create_app(generate_dataset(users, seed=16), connection_id="conn-t0000", token=token)
for i in range(1, tenants):
    app.state.simulator.add_connection(f"conn-t{i:04d}")
serve(app, port=port)
"""


def cpu_seconds(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user and system) used so far by each named process group (its processes alive now, with
    the children they have waited for), and by every PostgreSQL process on this machine (other users' too)."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = dict.fromkeys([*groups, "PostgreSQL"], 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        command, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        used = sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
        for name, group in groups.items():
            if int(fields[2]) == group:
                totals[name] += used
        if command.startswith("postgres"):
            totals["PostgreSQL"] += used
    return totals


def tenant_ids(n: int) -> list[str]:
    return [f"t{i:04d}" for i in range(n)]


def _set_up_tenants(url: str, base_url: str, n: int) -> None:
    from store.db import make_engine
    from store.repo import add_tenant, connect, select_groups

    engine = make_engine(url)
    for tenant in tenant_ids(n):
        add_tenant(engine, tenant)
        connect(engine, tenant, provider="entra", connection_id=f"conn-{tenant}", base_url=base_url)
        select_groups(engine, tenant, [], all_users=True)
    engine.dispose()


def _run_rows(url: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from store.db import make_engine
    from store.models import Run

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Run.tenant_id, Run.outcome, Run.started_at, Run.ended_at, Run.error)).mappings()
        found = [dict(r) for r in rows]
    engine.dispose()
    return found


def _overlap(runs: list[dict[str, Any]]) -> tuple[int, float]:
    """How many runs were running at once: at most, and on average between the first start and last end."""
    spans = [(r["started_at"], r["ended_at"]) for r in runs if r["started_at"] and r["ended_at"]]
    if not spans:
        return 0, 0.0
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    busy = sum((e - s).total_seconds() for s, e in spans)
    whole = (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()
    return peak, busy / whole if whole else 0.0


def _env(prefect_home: Path, api: str, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PROVISIONING_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PROVISIONING_HOME=str(ROOT),
        PROVISIONING_DATABASE_URL=database_url,
        UNIFIED_API_TOKEN=TOKEN,
    )
    return env


_THROUGH_DEPLOYMENT = """
import json, sys
from flows.sync_all import sync_all
print(json.dumps(sync_all(deployment="sync-tenant/sync-tenant", max_concurrent=int(sys.argv[1]))))
"""


@contextmanager
def infrastructure(
    tenants: int,
    users: int,
    *,
    prefect_db: str = "postgres",
    keep_logs: str | None = None,
    server_settings: dict[str, str] = SERVER_SETTINGS,
) -> Iterator[tuple[dict[str, str], Path, dict[str, int]]]:
    """The Prefect server, the simulator and the employee database with `tenants` tenants set up; yields the
    environment of a process that syncs them (PREFECT_API_URL, PROVISIONING_DATABASE_URL, the token), the
    folder of the logs and the process groups of the server and the simulator (for `cpu_seconds`).

    `prefect_db`: the Prefect server's own database, `postgres` (a second scratch database, as README's
    "Operating it on a Prefect server" runs it) or `sqlite` (Prefect's default, a file in its home).
    `server_settings`: the server's own environment on top (README's; `{}` for Prefect's defaults)."""
    tmp = Path(tempfile.mkdtemp(prefix="many-tenants-"))
    prefect = [sys.executable, "-m", "prefect"]
    try:
        with (
            scratch_database("postgres", tmp) as database_url,
            scratch_database(prefect_db, tmp) as prefect_database_url,
        ):
            port, sim_port = _free_port(), _free_port()
            api = f"http://127.0.0.1:{port}/api"
            env = _env(tmp / "prefect-home", api, database_url)
            if prefect_db == "postgres":
                server_url = prefect_database_url.replace("postgresql+psycopg://", "postgresql+asyncpg://")
                env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = server_url
            base_url = f"http://127.0.0.1:{sim_port}"
            server_env = {**env, **server_settings}
            with (
                _process(
                    [*prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    server_env,
                    tmp / "server.log",
                ) as server,
                _process(
                    [sys.executable, "-c", _SIMULATOR, str(sim_port), str(users), str(tenants), TOKEN],
                    env,
                    tmp / "simulator.log",
                ) as simulator,
            ):
                _set_up_tenants(database_url, base_url, tenants)
                _wait_listening(base_url, simulator, tmp / "simulator.log")
                _wait_listening(f"{api}/health", server, tmp / "server.log")
                try:
                    yield env, tmp, {"Prefect server": server.pid, "simulator": simulator.pid}
                finally:
                    if keep_logs:
                        kept = Path(keep_logs)
                        kept.mkdir(parents=True, exist_ok=True)
                        for log in tmp.glob("*.log"):
                            shutil.copy(log, kept / log.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def process_worker(env: dict[str, str], tmp: Path, limit: int) -> Iterator[int]:
    """The `sync-tenant` deployment of prefect.yaml on a `provisioning` pool, and a process worker of it."""
    prefect = [sys.executable, "-m", "prefect"]
    subprocess.run([*prefect, "work-pool", "create", POOL, "--type", "process"], env=env, check=True)
    subprocess.run([*prefect, "--no-prompt", "deploy", "--name", "sync-tenant"], env=env, cwd=ROOT, check=True)
    worker = [*prefect, "worker", "start", "--pool", POOL, "--type", "process", "--limit", str(limit)]
    with _process(worker, env, tmp / "worker.log") as proc:
        yield proc.pid


def run_backfill(args: argparse.Namespace) -> dict[str, Any]:
    """Set everything up, time the backfill, and read what it did."""
    provision = str(Path(sys.executable).parent / "provision")
    setup = infrastructure(
        args.tenants,
        args.users,
        prefect_db=args.prefect_db,
        keep_logs=args.keep_logs,
        server_settings={} if args.server_defaults else SERVER_SETTINGS,
    )
    with setup as (env, tmp, groups):
        if args.through_deployment:
            worker: Any = process_worker(env, tmp, args.max_concurrent)
            command = [sys.executable, "-c", _THROUGH_DEPLOYMENT, str(args.max_concurrent)]
        else:
            worker = _nothing()
            command = [provision, "sync-all", "--max-concurrent", str(args.max_concurrent), "--json"]
        with worker as worker_group:
            if worker_group is not None:
                groups["worker and its flow runs"] = worker_group
            load_before = os.getloadavg()
            cpu_before, children_before = cpu_seconds(groups), resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - started
            cpu_after, children_after = cpu_seconds(groups), resource.getrusage(resource.RUSAGE_CHILDREN)
            load_after = os.getloadavg()
        cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
        cpu["the backfill's process"] = (children_after.ru_utime + children_after.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        (tmp / "backfill.log").write_text(done.stderr)
        try:
            results = json.loads(done.stdout)
        except json.JSONDecodeError:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
            raise SystemExit(f"the backfill printed no JSON (exit {done.returncode})") from None
        runs = _run_rows(env["PROVISIONING_DATABASE_URL"])
    summary = _summary(args, results, runs, wall, load_before, load_after, done.returncode)
    summary["cpu_s"] = cpu
    return summary


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _summary(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    runs: list[dict[str, Any]],
    wall: float,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    exit_code: int,
) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    for r in results.values():
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    failed = {t: r.get("error") or r.get("state") for t, r in results.items() if r["outcome"] != "succeeded"}
    durations = sorted(
        (r["ended_at"] - r["started_at"]).total_seconds() for r in runs if r["started_at"] and r["ended_at"]
    )
    peak, mean = _overlap(runs)
    return {
        "tenants": args.tenants,
        "users": args.users,
        "max_concurrent": args.max_concurrent,
        "mode": ("through the deployment, a process worker" if args.through_deployment else "provision sync-all")
        + f"; Prefect server on {args.prefect_db}"
        + (", Prefect's default settings" if args.server_defaults else ", README's settings"),
        "wall_s": wall,
        "per_tenant_s": wall / args.tenants,
        "exit_code": exit_code,
        "outcomes": outcomes,
        "missing": args.tenants - len(results),
        "failed": failed,
        "run_rows": len(runs),
        "run_median_s": statistics.median(durations) if durations else None,
        "run_p90_s": durations[int(len(durations) * 0.9)] if durations else None,
        "peak_concurrent": peak,
        "mean_concurrent": mean,
        "load_before": load_before,
        "load_after": load_after,
    }


def _report(s: dict[str, Any], argv: list[str]) -> str:
    target = TARGET_SECONDS_PER_TENANT * s["tenants"]
    met = "met" if s["per_tenant_s"] <= TARGET_SECONDS_PER_TENANT and not s["failed"] else "not met"
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items()))
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "",
        f"`uv run python bench/many_tenants.py {' '.join(argv)}` ({s['mode']})",
        "",
        "| tenants x users | K | wall s | s per tenant | target | run median s | run p90 s | at once: max / mean "
        "| outcomes | load avg before / after |",
        "|---|---:|---:|---:|---|---:|---:|---|---|---|",
        f"| {s['tenants']:,} x {s['users']:,} | {s['max_concurrent']} | {s['wall_s']:.1f} | {s['per_tenant_s']:.3f} "
        f"| <= {target:.0f} s ({TARGET_SECONDS_PER_TENANT} s per tenant): {met} "
        f"| {s['run_median_s'] or 0:.2f} | {s['run_p90_s'] or 0:.2f} "
        f"| {s['peak_concurrent']} / {s['mean_concurrent']:.1f} | {outcomes} "
        f"| {s['load_before'][0]:.2f} / {s['load_after'][0]:.2f} |",
    ]
    cpu = ", ".join(f"{name} {used / s['tenants'] * 1000:.0f} ms" for name, used in s["cpu_s"].items())
    lines.append(f"\nCPU per tenant: {cpu} (PostgreSQL: every server process, other users' included).")
    if s["missing"]:
        lines.append(f"\n{s['missing']} tenant(s) missing from the backfill's result.")
    for tenant, error in sorted(s["failed"].items()):
        lines.append(f"\n- {tenant}: {error}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--users", type=int, default=200, help="users of each tenant's source")
    parser.add_argument("--max-concurrent", type=int, default=8)
    parser.add_argument(
        "--through-deployment", action="store_true", help="each tenant's run through the deployment, on a worker"
    )
    parser.add_argument("--prefect-db", choices=["postgres", "sqlite"], default="postgres", help="the Prefect server's")
    parser.add_argument(
        "--server-defaults", action="store_true", help="the Prefect server on Prefect's defaults, not README's"
    )
    parser.add_argument(
        "--keep-logs", metavar="DIR", help="copy the server's, simulator's, worker's and backfill's logs"
    )
    args = parser.parse_args()
    summary = run_backfill(args)
    print(_report(summary, sys.argv[1:]))


if __name__ == "__main__":
    main()
