"""The ASGI fake of the Unified.to HRIS API (employees and groups) and of its connection side (the
authorization flow, the connection object, its deletion), wire-compatible with the real one.

Behaviour (as the README's "Reliability" section lists it, after Unified.to's documented API):
- `GET /hris/{connection_id}/employee|group`: a bare JSON array; `limit` (default and cap 100) and
  `offset` accept floats such as `100.0`, as the official SDK sends them; a page shorter than `limit`
  ends the listing; `fields` repeated or comma-separated (only those fields, `id` always);
  an `X-Total-Count` header. Other query parameters are accepted and ignored.
- `GET /hris/{connection_id}/employee|group/{id}`: one object, 404 when unknown.
- `Authorization: Bearer <t>` (any case of "bearer") or a bare `<t>`; 401 when missing or wrong,
  404 for an unknown or deleted connection, 403 for a paused connection or one without the read permission
  of that listing (`hris_employee_read`, `hris_group_read`), 400 for a non-numeric or negative
  `limit`/`offset` or `limit=0`. Every connection serves the same tenant (the `source`).
- Connections (upstream-apis.md 1.9), all with the same token as the HRIS reads:
  `GET /unified/connection/{id}`: the Connection object (`id, workspace_id, integration_type,
  integration_name, categories, permissions, external_xref, environment, is_paused, last_healthy_at,
  created_at, updated_at`; never `auth`), 404 when unknown or deleted;
  `DELETE /unified/connection/{id}`: 200 with an empty body (the SDK types the answer as an optional
  string), 404 when unknown or already deleted;
  `GET /unified/connection?external_xref=X`: a bare array of the live connections (`limit`, `offset`).
  The initial connection (`connection_id`, of `provider`'s integration type, both HRIS read permissions)
  exists from the start.
- Authorization (upstream-apis.md 1.9a), no token (the admin's browser calls it):
  `GET /unified/integration/auth/{workspace_id}/{integration_type}` with `success_redirect`,
  `failure_redirect`, `scopes` (comma-separated or repeated; none means `hris_employee_read,hris_group_read`),
  `state`, `external_xref` answers a sign-in page ("Sign in to <integration> (simulated)") whose Authorize
  and Cancel links (`.../authorize`, `.../cancel`, the same query) answer 303: Authorize creates a connection
  (`conn-<hex>`, that integration type and workspace, the scopes as permissions, the `external_xref`) and
  goes to `success_redirect` with `id` and `state` appended; Cancel goes to `failure_redirect` with
  `error=access_denied` and `state`. With `auth_outcome` set ("authorize", "cancel", "error": then
  `error=authorization_failed`) the first URL redirects straight to that outcome, without the page.
  404 page for another workspace or an integration type not in domain.words.INTEGRATION_TYPES; 400 page
  without `success_redirect`. Redirects go to the URLs the caller passed, as a third party's would.
- Provider shapes (simulator.datasets describes each): the records are served as the dataset holds them;
  how `/hris/group` answers is the group endpoint (`create_app(group_endpoint=...)`, else the dataset's
  `"group_endpoint"`, else its provider's default): `listed` serves the dataset's `groups`; `unsupported`
  answers 501 `"<integration> does not support hris_group"` to the list and to get-by-id (as Unified
  answers for an object an integration lacks, UNCONFIRMED for Personio, upstream-apis.md 1.5 and 3); `empty`
  answers `[]` (and 404 by id). Authentication, the connection and its permission are checked first.
- Errors are `{"statusCode": N, "message": "...", "error": "<reason phrase>"}`; a 429's message is
  `Too many requests to Unified.to`.

Nothing here logs a request or response body.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import math
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Literal
from urllib.parse import quote, urlencode

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from domain.words import INTEGRATION_TYPES
from simulator.connections import (
    HRIS_READ_PERMISSIONS,
    INTEGRATION_NAMES,
    AuthOutcome,
    AuthRequest,
    Connection,
    NextConnection,
    integration_type_of,
    new_connection_id,
    page,
    scopes_of,
    sign_in_page,
)
from simulator.faults import Fault, FaultPlan, PathKind
from simulator.source import (
    Dataset,
    GroupEndpoint,
    Listing,
    SimulatorSource,
    TenantData,
    encode_json,
    group_endpoint_of,
)

MAX_LIMIT = 100
RATE_LIMIT_MESSAGE = "Too many requests to Unified.to"
_MESSAGES = {429: RATE_LIMIT_MESSAGE, 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}
PAUSED_MESSAGE = "Connection is paused"

# What a request was for: an HRIS listing (`employee`, `group`), the connection API (`connection`:
# `/unified/connection...`, any method), or the authorization flow (`auth`: the sign-in page and its links).
RequestKind = Literal["employee", "group", "connection", "auth"]
AuthStep = Literal["start", "authorize", "cancel"]


@dataclass(frozen=True)
class SeenRequest:
    """What the simulator remembers of a request: enough to assert on paging, nothing personal."""

    kind: RequestKind
    path: str
    limit: str | None
    offset: str | None
    status: int
    method: str = "GET"


class _ApiError(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        self.message = message or _MESSAGES.get(status) or HTTPStatus(status).phrase


def error_response(status: int, message: str | None = None, headers: dict[str, str] | None = None) -> Response:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    body = {
        "statusCode": status,
        "message": message or _MESSAGES.get(status) or reason,
        "error": reason,
    }
    return Response(encode_json(body), status_code=status, media_type="application/json", headers=headers)


def _fault_response(fault: Fault) -> Response:
    headers = dict(fault.headers)
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    if fault.body is not None:
        return Response(fault.body, status_code=fault.status, media_type="application/json", headers=headers)
    return error_response(fault.status, fault.message, headers)


class _DroppedResponse(Response):
    """Sends the headers (announcing the whole body) and half the body, then ends without finishing it:
    the server closes the connection mid-response, as a crashing upstream or a cut network does."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})


def _bend(response: Response, fault: Fault | None) -> Response:
    """Apply a fault that bends a real list answer: a dropped connection or a truncated body."""
    if fault is None or response.status_code != 200:
        return response
    if fault.drop:
        return _DroppedResponse(response.body, media_type="application/json", headers=_kept_headers(response))
    if fault.truncate:
        body = bytes(response.body)
        return Response(body[: max(1, len(body) // 2)], media_type="application/json", headers=_kept_headers(response))
    return response


def _kept_headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}


def _token_of(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    return header.strip()


def _number(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _ApiError(400, f"{name} must be a number") from None
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise _ApiError(400, f"{name} must be a non-negative integer")
    return int(value)


def _fields(request: Request) -> set[str] | None:
    wanted = {f.strip() for raw in request.query_params.getlist("fields") for f in raw.split(",")} - {""}
    return wanted | {"id"} if wanted else None


class _Simulator:
    def __init__(
        self,
        source: SimulatorSource,
        *,
        connection_id: str,
        token: str,
        faults: FaultPlan,
        latency_ms: float,
        workspace_id: str,
        provider: str,
        group_endpoint: GroupEndpoint | None,
        auth_outcome: AuthOutcome | None,
    ) -> None:
        self.source = source
        self.provider = provider  # the initial connection's; the shape's when the dataset names none
        # None: the dataset's `group_endpoint`, else its provider's default. Settable while serving.
        self.group_endpoint: GroupEndpoint | None = group_endpoint
        self.connection_id = connection_id  # the initial connection's
        self.workspace_id = workspace_id  # the one workspace the token belongs to
        self._token = token.encode()
        self.faults = faults
        self.latency_ms = latency_ms
        # Bounded, so a long-running `provision simulator` does not grow without end.
        self.requests: deque[SeenRequest] = deque(maxlen=100_000)
        # Requests being answered right now, and the most there ever were at once (shows client concurrency).
        # The event loop is one thread, so plain integers suffice.
        self.in_flight = 0
        self.max_in_flight = 0
        self.received = 0
        self.oversize_sent = 0  # bytes of `oversize` answers sent so far (a client that stops reading stops it)
        # The connections, live and deleted. Tests change them from their own thread while the server
        # answers on another, so changes go through the lock.
        self._lock = threading.Lock()
        self._integration_type = integration_type_of(provider)
        self.connections: dict[str, Connection] = {}
        self.deleted_connections: dict[str, Connection] = {}
        # None: the auth URL shows the sign-in page; an outcome: it redirects straight to that outcome.
        self.auth_outcome: AuthOutcome | None = auth_outcome
        self.next_connection: NextConnection | None = None  # overrides for the next authorized connection
        self.add_connection(connection_id)

    # ---- connections, for tests and the authorization flow --------------------------------------

    def add_connection(
        self,
        id: str | None = None,  # the Connection object's own word
        *,
        integration_type: str | None = None,
        permissions: Sequence[str] | None = None,
        external_xref: str | None = None,
        is_paused: bool = False,
    ) -> Connection:
        """Add a live connection of this workspace (a new `conn-<hex>` id unless given) and return it.

        Defaults: the initial connection's integration type, both HRIS read permissions.
        """
        connection = Connection(
            id=id or new_connection_id(),
            workspace_id=self.workspace_id,
            integration_type=integration_type or self._integration_type,
            permissions=list(HRIS_READ_PERMISSIONS if permissions is None else permissions),
            external_xref=external_xref,
            is_paused=is_paused,
        )
        with self._lock:
            if connection.id in self.connections:
                raise ValueError(f"connection {connection.id!r} exists already")
            self.connections[connection.id] = connection
        return connection

    def delete_connection(self, connection_id: str) -> Connection | None:
        """Delete a live connection (kept in `deleted_connections`); None when there is none by that id."""
        with self._lock:
            connection = self.connections.pop(connection_id, None)
            if connection is not None:
                self.deleted_connections[connection_id] = connection
        return connection

    def set_next_connection(
        self,
        *,
        id: str | None = None,  # the Connection object's own word
        integration_type: str | None = None,
        permissions: Sequence[str] | None = None,
        is_paused: bool | None = None,
    ) -> None:
        """Override what the next successful authorization creates (once; fields left None as asked)."""
        self.next_connection = NextConnection(
            id=id, integration_type=integration_type, permissions=permissions, is_paused=is_paused
        )

    def _authorized_connection(self, auth: AuthRequest) -> Connection:
        with self._lock:
            wanted, self.next_connection = self.next_connection or NextConnection(), None
        return self.add_connection(
            wanted.id,
            integration_type=wanted.integration_type or auth.integration_type,
            permissions=auth.permissions if wanted.permissions is None else wanted.permissions,
            external_xref=auth.external_xref,
            is_paused=bool(wanted.is_paused),
        )

    # ---- requests -------------------------------------------------------------------------------

    async def handle(self, request: Request, kind: PathKind) -> Response:
        return await self._tracked(request, kind, lambda: self._respond(request, kind))

    async def handle_connection(self, request: Request) -> Response:
        return await self._tracked(request, "connection", lambda: self._connection_api(request))

    async def handle_auth(self, request: Request, step: AuthStep) -> Response:
        async def answer() -> Response:
            return self._auth(request, step)

        return await self._tracked(request, "auth", answer)

    async def _tracked(
        self, request: Request, kind: RequestKind, answer: Callable[[], Awaitable[Response]]
    ) -> Response:
        self.received += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_ms:
                await anyio.sleep(self.latency_ms / 1000)
            response = await answer()
        finally:
            self.in_flight -= 1
        self.requests.append(
            SeenRequest(
                kind=kind,
                path=request.url.path,
                limit=request.query_params.get("limit"),
                offset=request.query_params.get("offset"),
                status=response.status_code,
                method=request.method,
            )
        )
        return response

    async def _respond(self, request: Request, kind: PathKind) -> Response:
        offset = None
        if "record_id" not in request.path_params:
            with contextlib.suppress(_ApiError):
                offset = _number(request.query_params.get("offset"), "offset", 0)
        fault = self.faults.take(kind, offset)
        if fault is not None:
            if fault.delay_s:
                await anyio.sleep(fault.delay_s)
            if fault.replaces_answer:
                return _fault_response(fault)
        try:
            self._authorize(request)
            self._readable(request.path_params["connection_id"], kind)
            data = self.source.current()
            if kind == "group":
                data = self._groups_as_served(data)
            record_id = request.path_params.get("record_id")
            if record_id is None:
                return _bend(self._list(request, data, kind, fault), fault)
            return self._get(request, data, kind, record_id)
        except _ApiError as exc:
            return error_response(exc.status, exc.message)

    def _groups_as_served(self, data: TenantData) -> TenantData:
        """`data` with the group listing the group endpoint serves, or the 501 of an integration without one."""
        endpoint = data.served_group_endpoint(self.group_endpoint, self.provider)
        if endpoint == "unsupported":
            name = INTEGRATION_NAMES[integration_type_of(data.provider or self.provider)]
            raise _ApiError(501, f"{name} does not support hris_group")
        if endpoint == "empty":
            return replace(data, group=Listing([]))
        return data

    def _authorize(self, request: Request) -> None:
        token = _token_of(request.headers.get("authorization"))
        if token is None or not hmac.compare_digest(token.encode(), self._token):
            raise _ApiError(401, "Unauthorized")

    def _connection(self, connection_id: str) -> Connection:
        connection = self.connections.get(connection_id)
        if connection is None:
            raise _ApiError(404, "Connection not found")
        return connection

    def _readable(self, connection_id: str, kind: PathKind) -> None:
        connection = self._connection(connection_id)
        if connection.is_paused:
            raise _ApiError(403, PAUSED_MESSAGE)
        # 403 for a missing scope is Unified's commonly reported behaviour, unconfirmed (upstream-apis.md 1.5).
        needed = f"hris_{kind}_read"
        if needed not in connection.permissions:
            raise _ApiError(403, f"Connection lacks the {needed} permission")

    def _list(self, request: Request, data: TenantData, kind: PathKind, fault: Fault | None = None) -> Response:
        limit = _number(request.query_params.get("limit"), "limit", MAX_LIMIT)
        offset = _number(request.query_params.get("offset"), "offset", 0)
        if limit == 0:
            raise _ApiError(400, "limit must be at least 1")
        limit = min(limit, MAX_LIMIT)
        listing = data.listing(kind)
        total = len(listing.records)
        if fault is not None and fault.empty:
            return Response(b"[]", media_type="application/json", headers={"X-Total-Count": "0"})
        if fault is not None and fault.ignore_offset:
            offset = 0  # a broken source: every page is the first one
        if fault is not None and fault.shift:
            offset = max(0, offset + fault.shift)  # offset drift: the source changed while being paged
        size = limit if fault is None or fault.page_cut is None else min(limit, fault.page_cut)
        if fault is not None:
            size += fault.overlong  # a page longer than the client asked for
        stop = min(offset + size, total)
        fields = _fields(request)
        parts = [listing.encoded(i, fields) for i in range(offset, stop)]
        body = b"[" + b",".join(parts) + b"]"
        headers: dict[str, str] = {}
        if fault is None or not fault.omit_total:
            headers["X-Total-Count"] = str(total + (fault.total_delta if fault else 0))
        if fault is not None and fault.oversize:
            return StreamingResponse(self._padded(body, fault.oversize), media_type="application/json", headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def _padded(self, body: bytes, padding: int) -> AsyncIterator[bytes]:
        """`body` with `padding` bytes of JSON whitespace before its closing bracket, 1 MiB at a time: valid
        JSON of any size, with no Content-Length to warn the client."""
        chunk = b" " * (1024 * 1024)
        pieces = [body[:-1], *([chunk] * (padding // len(chunk))), b" " * (padding % len(chunk)), body[-1:]]
        for piece in pieces:
            # A checkpoint per piece, where the response is cancelled once the client has gone: after a disconnect
            # uvicorn's send returns at once, and without one the rest would go to nobody in one tight loop.
            await anyio.lowlevel.checkpoint()
            self.oversize_sent += len(piece)
            yield piece

    def _get(self, request: Request, data: TenantData, kind: PathKind, record_id: str) -> Response:
        listing = data.listing(kind)
        i = listing.index.get(record_id)
        if i is None:
            raise _ApiError(404, f"{kind.capitalize()} not found")
        body = listing.encoded(i, _fields(request))
        return Response(body, media_type="application/json")

    # ---- the connection API -----------------------------------------------------------------------

    async def _connection_api(self, request: Request) -> Response:
        fault = self.faults.take("connection")
        if fault is not None:
            if fault.delay_s:
                await anyio.sleep(fault.delay_s)
            if fault.replaces_answer:
                return _fault_response(fault)
        try:
            self._authorize(request)
            connection_id = request.path_params.get("connection_id")
            if connection_id is None:
                return self._list_connections(request)
            if request.method == "DELETE":
                if self.delete_connection(connection_id) is None:
                    raise _ApiError(404, "Connection not found")
                return Response(b"", status_code=200)
            return _json(self._connection(connection_id).wire())
        except _ApiError as exc:
            return error_response(exc.status, exc.message)

    def _list_connections(self, request: Request) -> Response:
        limit = min(_number(request.query_params.get("limit"), "limit", MAX_LIMIT), MAX_LIMIT)
        offset = _number(request.query_params.get("offset"), "offset", 0)
        if limit == 0:
            raise _ApiError(400, "limit must be at least 1")
        xref = request.query_params.get("external_xref")
        with self._lock:
            live = list(self.connections.values())
        matching = [c.wire() for c in live if xref is None or c.external_xref == xref]
        return _json(matching[offset : offset + limit])

    # ---- the authorization flow ---------------------------------------------------------------------

    def _auth(self, request: Request, step: AuthStep) -> Response:
        workspace_id = request.path_params["workspace_id"]
        integration_type = request.path_params["integration_type"]
        if workspace_id != self.workspace_id:
            return _html(page("Not found", f"<p>No workspace {html.escape(workspace_id)}.</p>"), 404)
        if integration_type not in INTEGRATION_TYPES.values():
            return _html(page("Not found", f"<p>No integration {html.escape(integration_type)}.</p>"), 404)
        params = request.query_params
        success_redirect = params.get("success_redirect")
        if not success_redirect:
            return _html(page("Bad request", "<p>success_redirect is required.</p>"), 400)
        auth = AuthRequest(
            workspace_id=workspace_id,
            integration_type=integration_type,
            success_redirect=success_redirect,
            failure_redirect=params.get("failure_redirect") or None,
            permissions=scopes_of(params.getlist("scopes")),
            state=params.get("state"),
            external_xref=params.get("external_xref"),
        )
        outcome: AuthOutcome | None = self.auth_outcome if step == "start" else step
        if outcome is None:
            here = f"/unified/integration/auth/{quote(workspace_id, safe='')}/{quote(integration_type, safe='')}"
            query = urlencode(params.multi_items())
            return _html(sign_in_page(auth, f"{here}/authorize?{query}", f"{here}/cancel?{query}"))
        connection_id = self._authorized_connection(auth).id if outcome == "authorize" else None
        return RedirectResponse(auth.outcome_url(outcome, connection_id), status_code=303)


def _json(value: object) -> Response:
    return Response(encode_json(value), media_type="application/json")


def _html(body: str, status: int = 200) -> HTMLResponse:
    # The page carries the caller's `state` in its links: keep it out of caches and referrers, and run nothing.
    headers = {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'",
    }
    return HTMLResponse(body, status_code=status, headers=headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error_response(status)


def create_app(
    source: SimulatorSource | Dataset | str | os.PathLike[str],
    *,
    connection_id: str = "conn-demo",
    token: str = "sim-token",
    faults: FaultPlan | None = None,
    latency_ms: float = 0,
    workspace_id: str = "ws-sim",
    provider: str | None = None,
    auth_outcome: AuthOutcome | None = None,
    group_endpoint: str | None = None,
) -> Starlette:
    """The simulator as a Starlette app.

    `source` is a dataset dict, a path to a dataset JSON file (re-read when it changes), or a
    `SimulatorSource`; every connection serves it. `faults` is a `FaultPlan` the caller can keep adding to
    while the app runs; `latency_ms` delays every request (for benchmarks). `workspace_id` is the one
    workspace `token` belongs to; `provider` (a key of domain.words.INTEGRATION_TYPES; None: the dataset's
    `"provider"`, else entra) gives the initial connection `connection_id` its integration type, and the
    shape when the dataset names none; `group_endpoint` ("listed", "unsupported", "empty"; None: the
    dataset's `"group_endpoint"`, else its provider's default) overrides how `/hris/group` answers;
    `auth_outcome` makes the auth URL redirect straight to that outcome instead of showing the sign-in page
    (headless use). An unknown provider or group endpoint is a ValueError.

    The app's `state.simulator` exposes `source`, `faults` and `requests` (a log of `SeenRequest`, without
    query values beyond paging), `received` (requests arrived so far), `max_in_flight` (most requests
    answered at once), `provider` and `group_endpoint` (settable; None: the dataset's); and for the
    connection side `connections` and `deleted_connections` (id -> `Connection`), `add_connection(...)`,
    `delete_connection(id)`, `auth_outcome` (settable) and `set_next_connection(...)` / `next_connection`
    (overrides for the connection authorized next).
    """
    served = SimulatorSource.coerce(source)
    if provider is None:
        provider = served.current().provider or "entra"
    sim = _Simulator(
        served,
        connection_id=connection_id,
        token=token,
        faults=faults if faults is not None else FaultPlan(),
        latency_ms=latency_ms,
        workspace_id=workspace_id,
        provider=provider,
        group_endpoint=None if group_endpoint is None else group_endpoint_of(group_endpoint),
        auth_outcome=auth_outcome,
    )

    def endpoint(kind: PathKind) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await sim.handle(request, kind)

        return handler

    def auth_endpoint(step: AuthStep) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await sim.handle_auth(request, step)

        return handler

    auth = "/unified/integration/auth/{workspace_id}/{integration_type}"
    routes = [
        Route("/hris/{connection_id}/employee", endpoint("employee"), methods=["GET"]),
        Route("/hris/{connection_id}/employee/{record_id}", endpoint("employee"), methods=["GET"]),
        Route("/hris/{connection_id}/group", endpoint("group"), methods=["GET"]),
        Route("/hris/{connection_id}/group/{record_id}", endpoint("group"), methods=["GET"]),
        Route("/unified/connection", sim.handle_connection, methods=["GET"]),
        Route("/unified/connection/{connection_id}", sim.handle_connection, methods=["GET", "DELETE"]),
        Route(auth, auth_endpoint("start"), methods=["GET"]),
        Route(f"{auth}/authorize", auth_endpoint("authorize"), methods=["GET"]),
        Route(f"{auth}/cancel", auth_endpoint("cancel"), methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
    app.state.simulator = sim
    return app
