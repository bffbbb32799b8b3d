"""The ASGI fake of the Unified.to HRIS API (employees and groups), wire-compatible with the real one.

Behaviour (as the README's "Reliability" section lists it, after Unified.to's documented API):
- `GET /hris/{connection_id}/employee|group`: a bare JSON array; `limit` (default and cap 100) and
  `offset` accept floats such as `100.0`, as the official SDK sends them; a page shorter than `limit`
  ends the listing; `fields` repeated or comma-separated (only those fields, `id` always);
  an `X-Total-Count` header. Other query parameters are accepted and ignored.
- `GET /hris/{connection_id}/employee|group/{id}`: one object, 404 when unknown.
- `Authorization: Bearer <t>` (any case of "bearer") or a bare `<t>`; 401 when missing or wrong,
  404 for an unknown connection, 400 for a non-numeric or negative `limit`/`offset` or `limit=0`.
- Errors are `{"statusCode": N, "message": "...", "error": "<reason phrase>"}`; a 429's message is
  `Too many requests to Unified.to`.

Nothing here logs a request or response body.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from simulator.faults import Fault, FaultPlan, PathKind
from simulator.source import Dataset, SimulatorSource, TenantData, encode_json

MAX_LIMIT = 100
RATE_LIMIT_MESSAGE = "Too many requests to Unified.to"
_MESSAGES = {429: RATE_LIMIT_MESSAGE, 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}


@dataclass(frozen=True)
class SeenRequest:
    """What the simulator remembers of a request: enough to assert on paging, nothing personal."""

    kind: PathKind
    path: str
    limit: str | None
    offset: str | None
    status: int


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
    ) -> None:
        self.source = source
        self.connection_id = connection_id
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

    async def handle(self, request: Request, kind: PathKind) -> Response:
        self.received += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._respond(request, kind)
        finally:
            self.in_flight -= 1
        self.requests.append(
            SeenRequest(
                kind=kind,
                path=request.url.path,
                limit=request.query_params.get("limit"),
                offset=request.query_params.get("offset"),
                status=response.status_code,
            )
        )
        return response

    async def _respond(self, request: Request, kind: PathKind) -> Response:
        if self.latency_ms:
            await anyio.sleep(self.latency_ms / 1000)
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
            if request.path_params["connection_id"] != self.connection_id:
                raise _ApiError(404, "Connection not found")
            data = self.source.current()
            record_id = request.path_params.get("record_id")
            if record_id is None:
                return _bend(self._list(request, data, kind, fault), fault)
            return self._get(request, data, kind, record_id)
        except _ApiError as exc:
            return error_response(exc.status, exc.message)

    def _authorize(self, request: Request) -> None:
        token = _token_of(request.headers.get("authorization"))
        if token is None or not hmac.compare_digest(token.encode(), self._token):
            raise _ApiError(401, "Unauthorized")

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
        if fault is not None and fault.shift:
            offset = max(0, offset + fault.shift)  # offset drift: the source changed while being paged
        stop = min(offset + (limit if fault is None or fault.page_cut is None else min(limit, fault.page_cut)), total)
        fields = _fields(request)
        parts = [listing.encoded(i, fields) for i in range(offset, stop)]
        body = b"[" + b",".join(parts) + b"]"
        headers: dict[str, str] = {}
        if fault is None or not fault.omit_total:
            headers["X-Total-Count"] = str(total + (fault.total_delta if fault else 0))
        return Response(body, media_type="application/json", headers=headers)

    def _get(self, request: Request, data: TenantData, kind: PathKind, record_id: str) -> Response:
        listing = data.listing(kind)
        i = listing.index.get(record_id)
        if i is None:
            raise _ApiError(404, f"{kind.capitalize()} not found")
        body = listing.encoded(i, _fields(request))
        return Response(body, media_type="application/json")


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
) -> Starlette:
    """The simulator as a Starlette app.

    `source` is a dataset dict, a path to a dataset JSON file (re-read when it changes), or a
    `SimulatorSource`. `faults` is a `FaultPlan` the caller can keep adding to while the app runs;
    `latency_ms` delays every request (for benchmarks). The app's `state.simulator` exposes
    `source`, `faults` and `requests` (a log of `SeenRequest`, without query values beyond paging),
    `received` (requests arrived so far) and `max_in_flight` (most requests answered at once).
    """
    sim = _Simulator(
        SimulatorSource.coerce(source),
        connection_id=connection_id,
        token=token,
        faults=faults if faults is not None else FaultPlan(),
        latency_ms=latency_ms,
    )

    def endpoint(kind: PathKind) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await sim.handle(request, kind)

        return handler

    routes = [
        Route("/hris/{connection_id}/employee", endpoint("employee"), methods=["GET"]),
        Route("/hris/{connection_id}/employee/{record_id}", endpoint("employee"), methods=["GET"]),
        Route("/hris/{connection_id}/group", endpoint("group"), methods=["GET"]),
        Route("/hris/{connection_id}/group/{record_id}", endpoint("group"), methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
    app.state.simulator = sim
    return app
