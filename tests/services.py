"""The admin API served for tests: `provision serve`'s app on a free loopback port with its background
worker (the embedded default), the simulator as Unified.to behind it, tenants `acme` and `globex`, and keys
for each and for the platform. Used by the API tests and the settings page's browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Engine

from admin.runs import BackgroundWorker
from api.app import create_app
from settings import Settings
from simulator.serve import running_simulator
from store.access import create_key
from store.repo import add_tenant
from tests.upstreams import Upstream, serving

PLATFORM = "https://platform.example/settings/integration"  # the platform's page, on the allow-list


@dataclass
class Service:
    url: str
    upstream: Upstream
    worker: BackgroundWorker
    engine: Engine
    keys: dict[str, str]
    app: Any

    def client(self, key: str | None = "acme") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    @property
    def simulator(self) -> Any:
        assert self.upstream.app is not None
        return self.upstream.app.state.simulator


@contextmanager
def admin_service(engine: Engine, source: dict[str, Any]) -> Iterator[Service]:
    """The service over `engine`, the simulator serving `source`; waits for its runs before it stops.
    The caller sets `UNIFIED_API_TOKEN` to tests.upstreams.TOKEN."""
    add_tenant(engine, "acme", "ACME GmbH")
    add_tenant(engine, "globex", "Globex AG")
    keys = {
        "acme": create_key(engine, "acme-settings-page", "acme"),
        "globex": create_key(engine, "globex-settings-page", "globex"),
        "platform": create_key(engine, "platform-backend", None),
    }
    with serving(source) as upstream:
        settings = Settings(
            database_url=None,
            unified_base_url=upstream.url,
            unified_workspace_id="ws-sim",
            state_secret="test-state-secret",  # type: ignore[arg-type]
            redirect_allowlist="https://platform.example/settings/",
        )
        worker = BackgroundWorker()
        app = create_app(engine=engine, dispatcher=worker, settings=settings)
        with running_simulator(app) as url:  # serves any ASGI app on a free loopback port
            app.state.settings = settings.model_copy(update={"public_url": url})
            yield Service(url, upstream, worker, engine, keys, app)
        worker.wait(timeout=120)
        worker.shutdown()
