"""Serving the simulator over real HTTP: blocking (`provision simulator`) or in a background thread.

    with running_simulator(create_app(generate_dataset(1000, seed=1))) as base_url:
        client = UnifiedClient(base_url=base_url, token=SecretStr("sim-token"), connection_id="conn-demo", ...)

The access log is off: paths carry no personal data, but there is no need for the noise either, and
no body is ever logged.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from domain.errors import ExplainedError
from simulator.app import create_app
from simulator.connections import AuthOutcome, integration_type_of
from simulator.faults import FaultPlan, parse_fault_spec
from simulator.generator import generate_dataset
from simulator.source import SimulatorSource, group_endpoint_of


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="off",
        ws="none",  # no websocket library import (and none of its deprecation warnings)
        timeout_graceful_shutdown=2,
    )


class ListenError(ExplainedError):
    """The simulator's address cannot be listened on: the port is taken, out of range or not ours to bind."""


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (`host`, `port`; 0: a free port), or a ListenError saying why not.

    Bound before anything says "listening", so that a port already in use is a sentence and not a line of
    success followed by uvicorn's error.
    """
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every keep-alive response waits ~40 ms on Nagle + delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OverflowError:  # Python's own check of the number, before the OS sees it
        sock.close()
        raise ListenError(f"Cannot listen on port {port}: a port is a number from 0 to 65535.") from None
    except OSError as exc:
        sock.close()
        raise ListenError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}; choose another port.") from exc
    return sock


def serve(app: Starlette, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve `app` until interrupted (Ctrl-C); a ListenError when the port cannot be bound."""
    sock = bound_socket(host, port)
    try:
        uvicorn.Server(_config(app, host, sock.getsockname()[1])).run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def running_simulator(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` on a background thread; yield its base URL once it accepts connections; stop on exit.

    `port=0` picks a free port (the socket is bound here, before uvicorn starts, so there is no race).
    """
    sock = bound_socket(host, port)
    try:
        bound_port = sock.getsockname()[1]
        server = uvicorn.Server(_config(app, host, bound_port))
        errors: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # surfaced to the caller below, not swallowed
                errors.append(exc)

        thread = threading.Thread(target=run, name=f"simulator-{bound_port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if errors or not thread.is_alive():
                raise RuntimeError("the simulator failed to start") from (errors[0] if errors else None)
            if time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError("the simulator did not start within 10 s")
            time.sleep(0.005)
        url_host = f"[{host}]" if ":" in host else host
        try:
            yield f"http://{url_host}:{bound_port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            if errors:
                raise RuntimeError("the simulator crashed") from errors[0]
    finally:
        sock.close()


def run_simulator_command(
    port: int,
    users: int = 1000,
    seed: int = 0,
    dataset: str | Path | None = None,
    connection_id: str = "conn-demo",
    token: str = "sim-token",
    host: str = "127.0.0.1",
    latency_ms: float = 0,
    faults: Sequence[str] = (),
    slow_seconds: float = 60.0,
    workspace_id: str = "ws-sim",
    provider: str | None = None,
    auth_outcome: AuthOutcome | None = None,
    group_endpoint: str | None = None,
    embedded_groups: bool = False,
) -> None:
    """What `provision simulator` runs: serve a generated tenant (or a dataset file) until interrupted.

    `provider` (entra, personio, google; None: the dataset file's `"provider"`, else entra) is the initial
    connection's integration type and the shape of the generated tenant (simulator.generator);
    `group_endpoint` (listed, unsupported, empty; None: the dataset's, else the provider's default) is how
    `/hris/group` answers; `embedded_groups` gives a generated google tenant's employees their `groups[]`.
    `faults` are `--fault` specs (simulator.faults.FAULT_SPEC_HELP); a bad spec, an unknown provider or group
    endpoint, or `embedded_groups` with a dataset file or another provider raises ValueError first.
    `workspace_id` is the workspace of the token and of the authorization URL; `auth_outcome` ("authorize",
    "cancel", "error") answers that URL with a redirect straight back instead of the sign-in page.
    """
    plan = FaultPlan([f for spec in faults for f in parse_fault_spec(spec, slow_seconds=slow_seconds)])
    endpoint = None if group_endpoint is None else group_endpoint_of(group_endpoint)
    if dataset is not None:
        if embedded_groups:
            raise ValueError("embedded_groups shapes a generated tenant, not a dataset file.")
        source = SimulatorSource(path=dataset)
    else:
        generated = generate_dataset(users, seed, provider or "entra", embedded_groups=embedded_groups)
        source = SimulatorSource(generated)
    provider = provider or source.current().provider or "entra"
    integration_type = integration_type_of(provider)
    served_endpoint = source.current().served_group_endpoint(endpoint, provider)
    app = create_app(
        source,
        connection_id=connection_id,
        token=token,
        latency_ms=latency_ms,
        faults=plan,
        workspace_id=workspace_id,
        provider=provider,
        auth_outcome=auth_outcome,
        group_endpoint=endpoint,
    )
    embedded = ", groups[] on employees" if embedded_groups else ""
    what = (
        f"dataset {dataset}" if dataset is not None else f"{users} generated {provider} users (seed {seed}{embedded})"
    )
    extras = "".join(
        [
            f", /hris/group {served_endpoint}",
            f", {latency_ms:g} ms latency" if latency_ms else "",
            f", faults {' '.join(faults)}" if faults else "",
        ]
    )
    # A port that is taken is refused before anything says "listening": bound here once, let go, and bound
    # again by serve() a moment later (port 0 becomes the free port found here, so the line names it).
    with bound_socket(host, port) as probe:
        port = probe.getsockname()[1]
    print(
        f"Unified.to HRIS simulator listening on http://{host}:{port} with {what}{extras}: "
        f"connection id {connection_id} ({integration_type}), workspace {workspace_id}, "
        f"token {token} (the simulator's own fake token)",
        flush=True,
    )
    serve(app, host=host, port=port)
