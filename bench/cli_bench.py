"""Starts of the CLI and the no-change re-sync through it (issue 16, targets 3 and 4), run by hand (never in CI).

    uv run python bench/cli_bench.py
    uv run python bench/cli_bench.py --users 100000 --repeat 5 --demo

Everything as an operator meets it, each command its own process through the installed entry point
(`.venv/bin/provision`, what `uv run provision` runs after checking the environment), on the infrastructure of
bench/many_tenants.py: a local Prefect server (README's settings, its own PostgreSQL database), the simulator
serving one tenant `t0000` of `--users` users over HTTP, a scratch PostgreSQL employee database.

- Starts: commands that do not sync (`runs`, `employees`, `tenant list`, `tenant add`, `groups --help`,
  `--help`), `--repeat` times each; the median and the slowest beside the target (at most 1 s).
- The no-change re-sync: `provision sync t0000` once (the initial sync, not held to the target), then
  `--repeat` times again against the unchanged source: each one's wall time beside the target (at most 6 s),
  and the flow run's own duration from the run table.
- `--demo`: a fresh clone of this checkout's HEAD in a temporary folder, and the README's first command in it,
  `uv run provision demo`, timed from the clone on (uv's install included; target at most 25 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from many_tenants import infrastructure  # bench/ is the script's own folder, first on sys.path

ROOT = Path(__file__).resolve().parent.parent
PROVISION = str(Path(sys.executable).parent / "provision")
TARGET_START_S = 1.0
TARGET_NO_CHANGE_S = 6.0
TARGET_DEMO_S = 25.0

# (label, arguments): `{n}` is the repetition's number, for commands that add something
STARTS = [
    ("runs t0000", ["runs", "t0000"]),
    ("employees t0000", ["employees", "t0000"]),
    ("tenant list", ["tenant", "list"]),
    ("tenant add", ["tenant", "add", "bench-{n}"]),
    ("groups --help", ["groups", "--help"]),
    ("--help", ["--help"]),
]


def timed(command: list[str], env: dict[str, str], cwd: Path = ROOT) -> float:
    """Wall seconds of one command to its end; it must succeed."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return seconds


def flow_run_seconds(database_url: str) -> list[float]:
    """The duration of each of t0000's runs, as its run row records it, oldest first."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT started_at, ended_at FROM runs WHERE tenant_id = 't0000' ORDER BY started_at")
        ).all()
    engine.dispose()
    return [(ended - started).total_seconds() for started, ended in rows if ended is not None]


def demo_from_a_fresh_clone() -> float:
    """`uv run provision demo` in a new clone of HEAD, from the clone on; the environment is uv's to build."""
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is not on PATH")
    folder = Path(tempfile.mkdtemp(prefix="cli-bench-demo-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PROVISIONING_", "VIRTUAL_ENV"))}
        env["HOME"] = str(folder / "home")  # the demo's own data folder, not the operator's
        start = time.perf_counter()
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder / "clone")], check=True)
        timed([uv, "run", "provision", "demo"], env, cwd=folder / "clone")
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def said(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="also the README's demo from a fresh clone")
    args = parser.parse_args()

    load_before = os.getloadavg()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load_before[0]:.1f}"
    )
    with infrastructure(1, args.users) as (env, _tmp, _groups):
        print(f"`uv run python bench/cli_bench.py --users {args.users} --repeat {args.repeat}`\n")
        print("| command | median s | slowest s | target | |")
        print("|---|---:|---:|---|---|")
        for label, arguments in STARTS:
            seconds = [timed([PROVISION, *(a.format(n=n) for a in arguments)], env) for n in range(args.repeat)]
            slowest = max(seconds)
            print(
                f"| `provision {label}` | {statistics.median(seconds):.2f} | {slowest:.2f} "
                f"| ≤ {TARGET_START_S:.0f} s | {said(slowest <= TARGET_START_S)} |"
            )

        initial = timed([PROVISION, "sync", "t0000"], env)
        again = [timed([PROVISION, "sync", "t0000"], env) for _ in range(args.repeat)]
        runs = flow_run_seconds(env["PROVISIONING_DATABASE_URL"])
        print(f"\nThe initial sync of {args.users:,} users through `provision sync t0000`: {initial:.2f} s.")
        print("\n| no-change re-sync | wall s | the flow run's own s | target | |")
        print("|---:|---:|---:|---|---|")
        for n, (seconds, flow) in enumerate(zip(again, runs[1:], strict=True), start=1):
            verdict = said(seconds <= TARGET_NO_CHANGE_S)
            print(f"| {n} | {seconds:.2f} | {flow:.2f} | ≤ {TARGET_NO_CHANGE_S:.0f} s | {verdict} |")
        print(f"| median | {statistics.median(again):.2f} | {statistics.median(runs[1:]):.2f} | | |")

    if args.demo:
        demo = demo_from_a_fresh_clone()
        verdict = said(demo <= TARGET_DEMO_S)
        print(f"\n`uv run provision demo` from a fresh clone: {demo:.1f} s (≤ {TARGET_DEMO_S:.0f} s: {verdict})")
    load_after = os.getloadavg()
    print(f"\nload average {load_before[0]:.1f} before, {load_after[0]:.1f} after")


if __name__ == "__main__":
    main()
