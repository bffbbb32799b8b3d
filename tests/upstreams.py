"""A fake upstream for flow and CLI tests: the simulator served over real HTTP, its source, fault plan and
URL, plus the tenant wiring around it (a connected tenant with selected groups) and a sync through the flow.

The `upstream` fixture (tests/conftest.py) serves one of these, empty, with `UNIFIED_API_TOKEN` set to
`TOKEN`; tests fill its source with `upstream.source.replace(...)`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Engine
from starlette.applications import Starlette

from simulator.app import create_app
from simulator.faults import FaultPlan
from simulator.serve import running_simulator
from simulator.source import SimulatorSource
from store.repo import add_tenant, connect, replace_groups, select_groups
from tests.wire import dataset, group, person

TOKEN = "test-token-3f1c"  # what the served simulator accepts and `UNIFIED_API_TOKEN` holds in these tests
CONNECTION = "conn-1"  # the connection the served simulator starts with


@dataclass
class Upstream:
    source: SimulatorSource  # what the simulator lists; `.replace(dataset)` changes it between runs
    faults: FaultPlan  # faults the simulator serves before answering normally
    url: str  # its base URL on loopback
    app: Starlette | None = None  # the served app (None when built around a server started elsewhere)

    def requested_kinds(self) -> set[str]:
        """What the simulator was asked for so far ("employee", "group", "connection", "auth")."""
        return {r.kind for r in self._simulator().requests}

    def add_connection(self, connection_id: str) -> str:
        """Another live connection to the same source (the simulator serves every connection the same data)."""
        return str(self._simulator().add_connection(connection_id).id)

    def _simulator(self) -> Any:
        assert self.app is not None, "this Upstream was built around a server started elsewhere, without its app"
        return self.app.state.simulator


@contextmanager
def serving(
    data: dict[str, Any] | None = None,
    *,
    token: str = TOKEN,
    connection_id: str = CONNECTION,
    wrap: Callable[[Starlette], Any] | None = None,
) -> Iterator[Upstream]:
    """Serve the simulator with `data` (none by default) on a free loopback port until the block ends.

    `wrap` puts ASGI middleware around the app (e.g. a gate that holds a request).
    """
    source = SimulatorSource(data if data is not None else dataset([], []))
    faults = FaultPlan()
    app = create_app(source, connection_id=connection_id, token=token, faults=faults)
    with running_simulator(wrap(app) if wrap else app) as url:
        yield Upstream(source, faults, url, app)


def staff(n: int) -> list[dict[str, Any]]:
    """`n` active people u0..u{n-1} with the addresses person{i}@acme.example."""
    return [person(f"u{i}", f"person{i}@acme.example", "Anna", f"Nummer{i}") for i in range(n)]


def in_one_group(people: list[dict[str, Any]], group_id: str = "g") -> dict[str, Any]:
    """A source listing these people, every one of them a member of the one group `group_id`."""
    return dataset(people, [group(group_id, group_id.upper(), [p["id"] for p in people])])


def setup_tenant(
    engine: Engine,
    upstream: Upstream | str,
    groups: list[str],
    *,
    tenant: str = "acme",
    connection_id: str | None = None,
) -> None:
    """Tenant `tenant`, connected to the upstream (or a base URL), with these groups listed and selected.

    It stands for `provision tenant add / connect / groups / filter` without reading the source. The
    connection is `connection_id` when given; else the simulator's initial one (`CONNECTION`) for acme,
    and for any other tenant a connection of its own, added to the simulator: a connection belongs to
    one tenant.
    """
    if connection_id is None:
        if tenant == "acme":
            connection_id = CONNECTION
        else:
            assert isinstance(upstream, Upstream), "a tenant other than acme needs the Upstream to add its connection"
            connection_id = upstream.add_connection(f"conn-{tenant}")
    url = upstream if isinstance(upstream, str) else upstream.url
    add_tenant(engine, tenant)
    connect(engine, tenant, provider="entra", connection_id=connection_id, base_url=url)
    listed = {"group_id": groups, "name": groups, "parent_id": [None] * len(groups), "member_count": [0] * len(groups)}
    replace_groups(engine, tenant, pl.DataFrame(listed))
    select_groups(engine, tenant, groups, all_users=False)


def sync(tenant: str = "acme", **kw: Any) -> dict[str, Any]:
    """One sync of the tenant through the whole Prefect flow (needs the `prefect_api` fixture)."""
    from flows.sync_tenant import sync_tenant

    return sync_tenant(tenant, **kw)


class Gate:
    """ASGI middleware that holds the first employee request until the test opens the gate."""

    def __init__(self) -> None:
        self.app: Any = None
        self.entered = threading.Event()
        self.open = threading.Event()
        self._first = True

    def around(self, app: Any) -> Gate:
        self.app = app
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/employee") and self._first:
            import anyio

            self._first = False
            self.entered.set()
            await anyio.to_thread.run_sync(self.open.wait, 60)
        await self.app(scope, receive, send)
