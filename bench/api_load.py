"""Load on the admin API, run by hand: N concurrent clients list the first employee page of a large tenant
and poll its runs for a fixed time, against `provision serve`'s app on loopback (Postgres by default).

    uv run python bench/api_load.py --employees 100000 --clients 50 --seconds 60

Prints requests per second, p50/p99 latency and the count of answers by status (5xx must be zero).
Bounded in time and in count: every client stops at the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch import scratch_database  # noqa: E402 - bench/ is the script's own folder, first on sys.path


def _seed(url: str, employees: int) -> str:
    import polars as pl

    from store.access import create_key
    from store.bulk import copy_in
    from store.db import make_engine
    from store.models import utcnow
    from store.repo import add_tenant, start_run

    engine = make_engine(url)
    add_tenant(engine, "big")
    now = utcnow().isoformat()
    frame = pl.DataFrame(
        {
            "tenant_id": ["big"] * employees,
            "email": [f"person{i}@big.example" for i in range(employees)],
            "email_norm": [f"person{i}@big.example" for i in range(employees)],
            "first_name": ["Anna"] * employees,
            "last_name": [f"Nummer{i}" for i in range(employees)],
            "display_name": [f"Anna Nummer{i}" for i in range(employees)],
            "employment_status": ["active"] * employees,
            "source_user_id": [f"u{i}" for i in range(employees)],
            "status": ["synced"] * employees,
            "created_at": [now] * employees,
            "updated_at": [now] * employees,
        }
    )
    with engine.begin() as conn:
        copy_in(conn, "employees", frame)
    for _ in range(20):
        start_run(engine, "big", trigger="cli", parameters={}, flow_run_id=None, dry_run=False, outcome="succeeded")
    return create_key(engine, "load", "big")


async def _client(base: str, key: str, deadline: float, latencies: list[float], statuses: Counter[int]) -> None:
    import httpx

    paths = ["/tenants/big/employees?limit=50", "/tenants/big/runs?limit=10"]
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        n = 0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            answer = await http.get(paths[n % 2])
            latencies.append(time.perf_counter() - start)
            statuses[answer.status_code] += 1
            n += 1


async def _load(base: str, key: str, clients: int, seconds: float) -> tuple[list[float], Counter[int], float]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(_client(base, key, deadline, latencies, statuses) for _ in range(clients)))
    return latencies, statuses, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, scratch_database(args.db, Path(folder)) as url:
        latencies, statuses, took = _serve_and_load(url, args)
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        f"{args.clients} clients, {args.seconds:g} s, {args.employees:,} employees on {args.db}: "
        f"{len(latencies)} requests, {len(latencies) / took:.0f} req/s, p50 {quantiles[49] * 1000:.0f} ms, "
        f"p99 {quantiles[98] * 1000:.0f} ms, statuses {dict(sorted(statuses.items()))}"
    )


def _serve_and_load(url: str, args: argparse.Namespace) -> tuple[list[float], Counter[int], float]:
    """`provision serve` on the seeded database, loaded by the clients; stopped at the end."""
    key = _seed(url, args.employees)
    env = {
        **os.environ,
        "PROVISIONING_DATABASE_URL": url,
        "PROVISIONING_STATE_SECRET": "load-test-secret",
        "PROVISIONING_UNIFIED_WORKSPACE_ID": "ws-load",
        "PROVISIONING_PUBLIC_URL": f"http://127.0.0.1:{args.port}",
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("provision")), "serve", "--port", str(args.port)],
        env=env,
        cwd=ROOT,
    )
    try:
        import httpx

        base = f"http://127.0.0.1:{args.port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        return asyncio.run(_load(base, key, args.clients, args.seconds))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
