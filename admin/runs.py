"""Starting a queued sync without blocking the door that asked for it.

With a Prefect server configured (`PREFECT_API_URL`), the run goes through the `sync-tenant` deployment
of prefect.yaml, so the workers of the pool run it; on the embedded default the service's own
background worker runs the flow in-process. Either way it is a Prefect flow run that adopts the queued
run row, and the tenant's lock still decides: a run that finds the tenant busy is recorded `refused`.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from domain.errors import ExplainedError, describe
from store.db import make_engine
from store.repo import finish_run

DEPLOYMENT = "sync-tenant/sync-tenant"
_log = logging.getLogger("provisioning.admin")


class Dispatcher(Protocol):
    def start(self, tenant: str, run_id: str, *, dry_run: bool, override_guard: bool) -> None: ...


def prefect_server_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL"))


class BackgroundWorker:
    """Runs each sync as a flow run on a small thread pool of this process (the embedded default)."""

    def __init__(self, max_workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="admin-sync")
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()

    def start(self, tenant: str, run_id: str, *, dry_run: bool, override_guard: bool) -> None:
        future = self._pool.submit(self._run, tenant, run_id, dry_run, override_guard)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    @staticmethod
    def _run(tenant: str, run_id: str, dry_run: bool, override_guard: bool) -> None:
        from flows.sync_tenant import sync_tenant

        try:
            sync_tenant(tenant, dry_run=dry_run, override_guard=override_guard, trigger="api", run_id=run_id)
        except Exception as exc:  # the run row holds the outcome; this line names the type only
            _log.info("run %s of tenant %s ended: %s", run_id, tenant, describe(exc))

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the runs started so far (tests, and a graceful shutdown)."""
        with self._lock:
            pending = list(self._futures)
        for future in pending:
            future.result(timeout=timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


class ThroughDeployment:
    """Starts each sync through the `sync-tenant` deployment and returns at once (timeout 0)."""

    def __init__(self, deployment: str = DEPLOYMENT) -> None:
        self.deployment = deployment

    def start(self, tenant: str, run_id: str, *, dry_run: bool, override_guard: bool) -> None:
        from prefect.deployments import run_deployment

        try:
            run_deployment(
                self.deployment,
                parameters={
                    "tenant": tenant,
                    "dry_run": dry_run,
                    "override_guard": override_guard,
                    "trigger": "api",
                    "run_id": run_id,
                },
                flow_run_name=f"sync-{tenant}",
                timeout=0,
            )
        except Exception as exc:
            reason = f"could not start the run through {self.deployment} ({type(exc).__name__})"
            finish_run(make_engine(), run_id, outcome="failed", failed_stage="extract", error=reason)
            raise RunNotStarted(reason) from None


class RunNotStarted(ExplainedError):
    """The orchestrator did not take the run; the run row says so."""


def default_dispatcher() -> Dispatcher:
    return ThroughDeployment() if prefect_server_configured() else BackgroundWorker()
