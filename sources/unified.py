"""A plain (Prefect-free) client for the Unified.to HRIS API: employees and groups of one connection.

One `_request()` sorts every outcome into a typed error (sources/errors.py) and retries only the
transient ones; `iter_pages()` pages with `limit`/`offset` until a short page. Payloads are returned
raw; `sources.normalize` turns them into the frames of `sources.model`.

Retry budget: one request spends at most `max_retry_wait()` seconds asleep between its attempts
(`(max_attempts - 1) * backoff_max`, since a `Retry-After` is capped at `backoff_max` too), plus up to
`max_attempts` request timeouts. A task-level retry should be bounded against that, not multiply it.

The retry loop is hand-written rather than tenacity/stamina: it is a dozen lines, it must honour
`Retry-After` (seconds or an HTTP date) per response, and its sleep is injected so tests do not wait.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from sources.errors import (
    MalformedPayloadError,
    PageLimitError,
    SourceAuthError,
    SourceNotFoundError,
    SourceRequestError,
    TransientSourceError,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
PAGE_SIZE = 100  # Unified's default and maximum page size
MAX_PAGES = 10_000  # 1M records: far beyond any tenant; hitting it means paging never ends
USER_AGENT = "employee-provisioning/0.1 (+unified-hris-client)"
# Data minimisation starts at the request: ask only for what the normalizer keeps (it drops the rest
# anyway, for integrations that ignore `fields`). Comma-separated, as the Unified CLI sends it.
EMPLOYEE_FIELDS = "id,name,first_name,last_name,emails,employment_status,groups"
GROUP_FIELDS = "id,name,parent_id,user_ids"


def _retry_after_seconds(response: httpx.Response, now: Callable[[], float] = time.time) -> float | None:
    """`retry-after-ms`, or `Retry-After` as seconds (possibly fractional) or an HTTP date; else None."""
    ms = response.headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


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
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {PAGE_SIZE}")
        self.tenant = tenant
        self.connection_id = connection_id
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.page_size = page_size
        self.max_pages = max_pages
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._prefix = f"/hris/{quote(connection_id, safe='')}"
        # The token is unwrapped here only, into a header httpx never puts into an exception message.
        self._http = httpx.Client(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    # -- lifecycle ------------------------------------------------------------------------------

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

    # -- retry arithmetic -----------------------------------------------------------------------

    def max_retry_wait(self) -> float:
        """Worst-case seconds one request sleeps between its attempts (excluding the attempts themselves)."""
        return (self.max_attempts - 1) * self.backoff_max

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(attempt-1))].
        return self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    # -- one request ----------------------------------------------------------------------------

    def _where(self) -> str:
        return f"for connection {self.connection_id}"

    def _request(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET `path` under the connection, retrying transient failures; return the decoded JSON body."""
        url = self._prefix + path
        cause = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._http.get(url, params=params)
            except httpx.TimeoutException as exc:
                cause = f"timed out ({type(exc).__name__})"
                wait = self._backoff(attempt)
            except httpx.TransportError as exc:
                cause = f"connection failed ({type(exc).__name__})"
                wait = self._backoff(attempt)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._decode(response, path)
                if status == 429 or (status >= 500 and status != 501):
                    cause = "rate limited (429)" if status == 429 else f"server error ({status})"
                    retry_after = _retry_after_seconds(response)
                    wait = self._backoff(attempt) if retry_after is None else retry_after
                else:
                    self._raise_permanent(status, path)
            if attempt < self.max_attempts:
                self._sleep(min(wait, self.backoff_max))
        raise TransientSourceError(
            f"Unified.to {path} {self._where()} still failing after {self.max_attempts} attempts: {cause}",
            tenant=self.tenant,
        )

    def _raise_permanent(self, status: int, path: str) -> None:
        where = self._where()
        if status in (401, 403):
            raise SourceAuthError(
                f"Unified.to refused the API token ({status}) {where}"
                + (": the connection may be paused or lack a permission" if status == 403 else ""),
                tenant=self.tenant,
                status=status,
            )
        if status == 404:
            raise SourceNotFoundError(
                f"Unified.to does not know {path} ({status}) {where}: wrong connection id?",
                tenant=self.tenant,
                status=status,
            )
        if status == 501:
            # 501 is how Unified says the integration does not support the object: no retry helps.
            raise SourceRequestError(
                f"the integration behind Unified.to does not support {path} ({status}) {where}",
                tenant=self.tenant,
                status=status,
            )
        raise SourceRequestError(
            f"Unified.to rejected the request for {path} ({status}) {where}",
            tenant=self.tenant,
            status=status,
        )

    def _decode(self, response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise MalformedPayloadError(
                f"Unified.to answered {path} {self._where()} with a body that is not JSON",
                tenant=self.tenant,
                status=response.status_code,
            ) from None

    # -- paging ---------------------------------------------------------------------------------

    def iter_pages(self, path: str, *, fields: str | None = None) -> Iterator[list[Any]]:
        """Yield the pages of a list endpoint.

        Stop rule: a page shorter than `limit` is the last one (so a listing of exactly N*limit records
        ends with an empty page). The offset advances by the records received. More than `max_pages`
        pages raises PageLimitError rather than loop forever on a source that ignores `offset`.
        """
        offset = 0
        for _ in range(self.max_pages):
            params: dict[str, Any] = {"limit": self.page_size, "offset": offset}
            if fields:
                params["fields"] = fields
            page = self._request(path, params)
            if not isinstance(page, list):
                raise MalformedPayloadError(
                    f"Unified.to answered {path} {self._where()} with a JSON {type(page).__name__}, "
                    "not the array it promises",
                    tenant=self.tenant,
                )
            yield page
            if len(page) < self.page_size:
                return
            offset += len(page)
        raise PageLimitError(
            f"Unified.to {path} {self._where()} did not end within {self.max_pages} pages",
            tenant=self.tenant,
        )

    def _list(self, path: str, fields: str) -> list[Any]:
        records: list[Any] = []
        for page in self.iter_pages(path, fields=fields):
            records.extend(page)
        return records

    def list_employees(self) -> list[Any]:
        """Every HrisEmployee of the connection, raw (normalize them with `sources.normalize`)."""
        return self._list("/employee", EMPLOYEE_FIELDS)

    def list_groups(self) -> list[Any]:
        """Every HrisGroup of the connection, raw."""
        return self._list("/group", GROUP_FIELDS)
