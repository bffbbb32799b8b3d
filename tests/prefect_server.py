"""A real `prefect server` and other background processes for the end-to-end tests: free loopback ports,
processes stopped with their whole process group, commands run to their end, waiting for health.

Used by tests/test_e2e_prefect.py (deploy, a worker, Run now) and tests/test_alerts.py (the alert automation,
with runs of the flow in processes of their own).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A background process in its own process group, stopped with all its children on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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


def run(args: list[str], env: dict[str, str], timeout: float = 180) -> str:
    """A command to its end, which must succeed; its stdout."""
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wait_healthy(api: str, server: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"prefect server exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def prefect_settings(tmp_path: Path, api: str) -> dict[str, str]:
    """The environment of every process that talks to the server `api`: a Prefect home of its own, no analytics,
    no UI. Put it on an environment that has no other `PREFECT_` variables."""
    return {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }


@contextmanager
def prefect_server(tmp_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`prefect server start` on the port of `env`'s PREFECT_API_URL, healthy when the block starts."""
    api = env["PREFECT_API_URL"]
    port = api.rsplit(":", 1)[1].split("/")[0]
    log = tmp_path / "server.log"
    with process([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port], env, log) as server:
        wait_healthy(api, server, log)
        yield server


# The flow in a process of its own, with a trigger no command gives (`provision sync` is always `cli`): a run as
# the scheduler or a backfill would start it. Its own process also means its own Prefect events worker, bound
# to the server in its environment and drained when the process ends.
_SYNC = "import sys; from flows.sync_tenant import sync_tenant; sync_tenant(sys.argv[1], trigger=sys.argv[2])"


def sync_in_own_process(tenant: str, trigger: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One run of the sync flow for `tenant` with `trigger`, to its end (it may fail: see the exit code)."""
    return subprocess.run(
        [sys.executable, "-c", _SYNC, tenant, trigger], env=env, cwd=REPO, capture_output=True, text=True, timeout=180
    )
