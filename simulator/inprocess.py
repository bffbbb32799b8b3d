"""A sync httpx transport that calls the simulator in-process (httpx's own ASGITransport is async-only).

    client = UnifiedClient(..., base_url="http://sim", transport=SyncASGITransport(create_app(data)))

It runs `httpx.ASGITransport` on an anyio blocking portal (an event loop in a helper thread). No socket,
no port; timeouts do not apply. Closing the transport (the client does that) stops the portal.
"""

from __future__ import annotations

import contextlib

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.types import ASGIApp


class SyncASGITransport(httpx.BaseTransport):
    def __init__(self, app: ASGIApp) -> None:
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())
        self._transport = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self._transport.handle_async_request(inner)
            content = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return response.status_code, response.headers.raw, content

        status, headers, content = self._portal.call(call)
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        self._stack.close()
