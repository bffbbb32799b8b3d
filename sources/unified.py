"""A plain (Prefect-free) client for the Unified.to HRIS API: employees and groups of one connection, and the
connection object itself (read to check it, deleted on disconnect).

The Unified.to side only: the `/hris/{connection_id}` endpoints, their page parameters and field
selections. Requests and their retries are `sources.http`'s; paging, its stop rule and the
consistent-listing re-reads are `sources.paging`'s. Payloads are returned raw (`list_employees`,
`list_groups`), or each page handed as it arrives to a reducer that keeps what it needs of it
(`employee_pages`, `group_pages`: the extract's `sources.normalize.read_user_page` and `read_group_page`,
so that a large tenant's raw records are never all held at once); `sources.normalize` turns them into the
frames of `sources.model`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from sources.errors import MalformedPayloadError, SourceNotFoundError
from sources.http import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, SourceHttp
from sources.paging import (
    DEFAULT_CONCURRENCY,
    MAX_PAGES,
    MAX_READS,
    B,
    CombinePages,
    P,
    Page,
    Pager,
    ReducePage,
)

PAGE_SIZE = 100  # Unified's default and maximum page size
USER_AGENT = "employee-provisioning/0.1 (+unified-hris-client)"
# Data minimisation starts at the request: ask only for what the normalizer keeps (it drops the rest
# anyway, for integrations that ignore `fields`). Comma-separated, as the Unified CLI sends it.
EMPLOYEE_FIELDS = "id,name,first_name,last_name,emails,employment_status,terminated_at,groups"
GROUP_FIELDS = "id,name,type,parent_id,user_ids"


class UnifiedClient:
    """Reads the employees and groups of one Unified.to connection on behalf of one tenant."""

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr,
        connection_id: str,
        tenant: str,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        rng: random.Random | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_reads: int = MAX_READS,
        clock: Callable[[], float] = time.monotonic,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {PAGE_SIZE}")
        self.tenant = tenant
        self.connection_id = connection_id
        self._where = f"for connection {connection_id}"
        self._pager = Pager(
            tenant=tenant, page_size=page_size, max_pages=max_pages, concurrency=concurrency, max_reads=max_reads
        )
        self._http = SourceHttp(  # last: it opens the connection pool, which nothing above may leak
            base_url=base_url,
            prefix=f"/hris/{quote(connection_id, safe='')}",
            token=token,
            tenant=tenant,
            upstream="Unified.to",
            where=self._where,
            user_agent=USER_AGENT,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            transport=transport,
            sleep=sleep,
            rng=rng,
            clock=clock,
            max_response_bytes=max_response_bytes,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"UnifiedClient(tenant={self.tenant!r}, connection_id={self.connection_id!r})"

    @property
    def requests_sent(self) -> int:
        """Requests sent so far, retries and re-reads included."""
        return self._http.requests_sent

    def max_retry_wait(self) -> float:
        """Worst-case seconds one request sleeps between its attempts (see `sources.http`)."""
        return self._http.max_retry_wait()

    def list_employees(self) -> list[Any]:
        """Every HrisEmployee of the connection, raw (normalize them with `sources.normalize`)."""
        return self._pager.read_listing(*self._listing("/employee", EMPLOYEE_FIELDS))

    def list_groups(self) -> list[Any]:
        """Every HrisGroup of the connection, raw. SourceNotSupportedError (501) where the integration lists no
        groups (Personio: its groups arrive only in the employees' `groups[]`)."""
        return self._pager.read_listing(*self._listing("/group", GROUP_FIELDS))

    def employee_pages(self, reduce: ReducePage[P], combine: CombinePages[P, B]) -> list[B]:
        """The HrisEmployees of the connection, each page `reduce(position, records)`d as it arrives and runs of
        them `combine`d, in listing order; a page's raw records are dropped once reduced. `reduce` must be
        thread-safe: `sources.paging.Pager.read_pages`."""
        return self._pager.read_pages(*self._listing("/employee", EMPLOYEE_FIELDS), reduce, combine)

    def group_pages(self, reduce: ReducePage[P], combine: CombinePages[P, B]) -> list[B]:
        """The HrisGroups of the connection, as `employee_pages` reads the employees; SourceNotSupportedError as
        `list_groups`."""
        return self._pager.read_pages(*self._listing("/group", GROUP_FIELDS), reduce, combine)

    def _listing(self, path: str, fields: str) -> tuple[Callable[[int, int], Page], str]:
        """The page fetch of a listing and its name in error messages."""
        return partial(self._page, path, fields), f"Unified.to {path} {self._where}"

    def _page(self, path: str, fields: str, index: int, size: int) -> Page:
        """The page at offset `index * size` and its X-Total-Count (None when absent or unreadable)."""
        page, headers = self._http.get(path, {"limit": size, "offset": index * size, "fields": fields})
        if not isinstance(page, list):
            raise MalformedPayloadError(
                f"Unified.to answered {path} {self._where} with a JSON {type(page).__name__}, "
                "not the array it promises",
                tenant=self.tenant,
            )
        if len(page) > size:  # counted as a full page it would page on past what it already sent
            raise MalformedPayloadError(
                f"Unified.to answered {path} {self._where} with {len(page)} records where limit={size} allows "
                f"at most {size}; nothing was changed",
                tenant=self.tenant,
            )
        return page, _total_count(headers)


def _total_count(headers: httpx.Headers) -> int | None:
    value = headers.get("x-total-count")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # an unreadable total is no total: paging still ends on a short page


class UnifiedConnection(BaseModel):
    """The part of Unified.to's Connection object the product checks (upstream-apis.md 1.9): never `auth`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    workspace_id: str | None = None
    integration_type: str | None = None
    permissions: list[str] = []
    external_xref: str | None = None
    is_paused: bool = False


def _connection_http(base_url: str, token: SecretStr, tenant: str, connection_id: str, **options: Any) -> SourceHttp:
    return SourceHttp(
        base_url=base_url,
        prefix="/unified/connection",
        token=token,
        tenant=tenant,
        upstream="Unified.to",
        where=f"for connection {connection_id}",
        user_agent=USER_AGENT,
        **options,
    )


def read_connection(
    base_url: str, token: SecretStr, *, tenant: str, connection_id: str, **options: Any
) -> UnifiedConnection:
    """`GET /unified/connection/{id}`; SourceNotFoundError when Unified.to does not know it."""
    http = _connection_http(base_url, token, tenant, connection_id, **options)
    try:
        body, _headers = http.get("/" + quote(connection_id, safe=""))
    finally:
        http.close()
    try:
        return UnifiedConnection.model_validate(body)
    except ValidationError:
        raise MalformedPayloadError(
            f"Unified.to answered for connection {connection_id} with something that is not a connection",
            tenant=tenant,
        ) from None


def delete_connection(base_url: str, token: SecretStr, *, tenant: str, connection_id: str, **options: Any) -> bool:
    """`DELETE /unified/connection/{id}`: True when deleted, False when Unified.to no longer knew it."""
    http = _connection_http(base_url, token, tenant, connection_id, **options)
    try:
        http.request("DELETE", "/" + quote(connection_id, safe=""))
    except SourceNotFoundError:
        return False
    finally:
        http.close()
    return True
