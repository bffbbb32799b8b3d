"""The settings page while a large tenant syncs, run by hand: does any page freeze?

Everything as on the embedded default, in one process: the simulator serves a generated tenant of N users,
`provision serve`'s app runs the sync in its own background worker (so the sync and the pages share one
Python process), and a few clients signed in to the page keep loading its pages until the run ends.

    uv run python bench/page_during_sync.py --users 100000 --clients 4 [--db postgres]

Prints the sync's wall time and, per page, how many loads, p50 and the slowest, and the statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch import scratch_database  # noqa: E402 - bench/ is the script's own folder, first on sys.path

TOKEN = "sim-token"


async def _page_loads(
    base: str,
    cookie: str,
    run_path: str,
    done: asyncio.Event,
    latencies: dict[str, list[float]],
    statuses: Counter[int],
) -> None:
    import httpx

    pages = [
        "/ui/t/big",
        "/ui/t/big/employees",
        "/ui/t/big/employees?offset=50000",
        "/ui/t/big/employees?q=nummer4242",
        run_path + "/status",
        "/ui/t/big/runs",
    ]
    async with httpx.AsyncClient(base_url=base, headers={"Cookie": cookie}, timeout=120) as http:
        n = 0
        while not done.is_set():
            page = pages[n % len(pages)]
            start = time.perf_counter()
            answer = await http.get(page)
            latencies[page.replace(run_path, "/ui/t/big/runs/{run}")].append(time.perf_counter() - start)
            statuses[answer.status_code] += 1
            n += 1


async def _during(base: str, cookie: str, run_url: str, clients: int) -> tuple[dict[str, list[float]], Counter[int]]:
    import httpx

    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: Counter[int] = Counter()
    done = asyncio.Event()
    run_path = run_url.replace("/tenants/big/runs/", "/ui/t/big/runs/")

    async def watch() -> None:
        async with httpx.AsyncClient(base_url=base, headers={"Cookie": cookie}, timeout=120) as http:
            while (await http.get(run_path + "/status")).json()["outcome"] in ("queued", "running"):
                await asyncio.sleep(0.5)
        done.set()

    await asyncio.gather(
        watch(), *(_page_loads(base, cookie, run_path, done, latencies, statuses) for _ in range(clients))
    )
    return latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, scratch_database(args.db, Path(folder)) as url:
        _measure(url, args)


def _measure(url: str, args: argparse.Namespace) -> None:
    """The sync and the page loads on the database at `url`; prints the figures."""
    os.environ["PROVISIONING_DATABASE_URL"] = url
    os.environ["UNIFIED_API_TOKEN"] = TOKEN

    import httpx

    from admin.operations import fresh_groups
    from admin.runs import BackgroundWorker
    from api.app import create_app as create_api
    from settings import Settings
    from simulator.app import create_app as create_simulator
    from simulator.generator import generate_dataset
    from simulator.serve import running_simulator
    from store.access import create_key
    from store.db import make_engine
    from store.repo import add_tenant, connect, select_groups

    dataset = generate_dataset(args.users, seed=7)
    with running_simulator(create_simulator(dataset, connection_id="conn-big", token=TOKEN)) as source:
        engine = make_engine(url)
        add_tenant(engine, "big")
        connect(engine, "big", provider="entra", connection_id="conn-big", base_url=source)
        select_groups(engine, "big", [], all_users=True)
        fresh_groups(engine, "big")  # as connecting does: the group list read once and stored
        key = create_key(engine, "page-bench", "big")
        settings = Settings(
            database_url=url,
            unified_base_url=source,
            unified_workspace_id="ws-sim",
            state_secret="bench-secret",  # type: ignore[arg-type]
        )
        worker = BackgroundWorker()
        with running_simulator(create_api(engine=engine, dispatcher=worker, settings=settings)) as base:
            session = httpx.post(f"{base}/sessions", headers={"Authorization": f"Bearer {key}"}).json()
            cookie = f"provisioning_session={session['key']}"
            started = time.monotonic()
            run = httpx.post(
                f"{base}/tenants/big/syncs", json={}, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ).json()
            latencies, statuses = asyncio.run(_during(base, cookie, run["url"], args.clients))
            took = time.monotonic() - started
            outcome = httpx.get(f"{base}{run['url']}", headers={"Authorization": f"Bearer {key}"}).json()
            worker.wait(timeout=600)
            worker.shutdown()
    print(
        f"{args.users:,} users on {args.db}, {args.clients} page clients: the sync {outcome['outcome']} "
        f"(created {outcome['counts'].get('created', 0):,}) in {took:.1f} s from the request"
    )
    for page, seconds in sorted(latencies.items()):
        p50 = statistics.median(seconds)
        print(f"  {page:<40} {len(seconds):>5} loads  p50 {p50 * 1000:6.0f} ms  slowest {max(seconds) * 1000:6.0f} ms")
    print(f"  statuses {dict(sorted(statuses.items()))}")


if __name__ == "__main__":
    main()
