"""GET one JSON body from an upstream API for one tenant: retries of transient failures, typed errors.

`SourceHttp.get()` sorts every outcome into a typed error (sources/errors.py) and retries only the
transient ones (429, 5xx other than 501, timeouts, connection errors), honouring `Retry-After`, with
full-jitter backoff in between. A 429 or 5xx pauses every thread using the client, not just the one that
got it: the thread that was told to wait holds a shared gate while it sleeps, and every request first
passes that gate.

Retry budget: one request spends at most `max_retry_wait()` seconds asleep between its attempts
(`(max_attempts - 1) * backoff_max`, since a `Retry-After` is capped at `backoff_max` too), plus up to
`max_attempts` request timeouts. Threads sharing the gate wait out each other's sleeps as well.

Bodies are read as they stream in and counted: an answer longer than `max_response_bytes` (decoded bytes,
so a compressed body counts at its real size; default 64 MiB, PROVISIONING_MAX_RESPONSE_BYTES) is a
ResponseTooLargeError as soon as its Content-Length says so or its bytes pass the cap, before it is held in
memory whole. A 100-record page is about 30 KB: the cap is two thousand times that. Error answers (4xx, 5xx)
are not read at all: only their status and headers are used.

Bodies are decoded with orjson (several times faster than the json module on 100-record pages); what it
refuses (lone surrogates, NaN, UTF-16) is decoded by the json module instead, so what counts as JSON is
unchanged. (orjson reads integers beyond 64 bits as floats; no field the normalizer keeps is a number.)

The retry loop is hand-written rather than tenacity/stamina: it is a dozen lines, it must honour
`Retry-After` (seconds or an HTTP date) per response, and its sleep is injected so tests do not wait.
"""

from __future__ import annotations

import email.utils
import functools
import json
import random
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from sources.errors import (
    MalformedPayloadError,
    ResponseTooLargeError,
    SourceAuthError,
    SourceNotFoundError,
    SourceNotSupportedError,
    SourceRequestError,
    TransientSourceError,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # settings.Settings.max_response_bytes


def retry_after_seconds(response: httpx.Response, now: Callable[[], float] = time.time) -> float | None:
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


def _shown(url: httpx.URL) -> str:
    """The URL of a request without its query, for a message: which host and path were asked."""
    return str(url.copy_with(query=None))


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (its CA bundle; SSL_CERT_FILE and SSL_CERT_DIR honoured), made once per process:
    loading the CA bundle took 25 ms of CPU for every client, that is for every tenant's run in a backfill."""
    return httpx.create_ssl_context()


class SourceHttp:
    """The HTTP side of a source client: GETs under `base_url` + `prefix` with a bearer token.

    `upstream` and `where` name the API and what of it is read ("Unified.to", "for connection c1") in
    every error message; the tenant is named by the error itself.
    """

    def __init__(
        self,
        *,
        base_url: str,
        prefix: str,
        token: SecretStr,
        tenant: str,
        upstream: str,
        where: str,
        user_agent: str,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if max_attempts < 1 or max_response_bytes < 1:
            raise ValueError("max_attempts and max_response_bytes must be at least 1")
        self.max_response_bytes = max_response_bytes
        self.tenant = tenant
        self.upstream = upstream
        self.where = where
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        # Held by a thread while it sleeps off a 429/5xx; every request passes it first (backing off together).
        self._pause = threading.Lock()
        self._sent = 0  # requests sent, every attempt counted (under _sent_lock: pages go out on threads)
        self._sent_lock = threading.Lock()
        self._prefix = prefix
        self._urls: dict[str, httpx.URL] = {}  # absolute URL per path, parsed once
        # The token is unwrapped here only, into a header httpx never puts into an exception message.
        self._http = httpx.Client(
            verify=_tls_context(),
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": user_agent,
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    @property
    def requests_sent(self) -> int:
        """Requests sent so far, every attempt counted: what a run's log reports."""
        return self._sent

    # -- retry arithmetic -----------------------------------------------------------------------

    def max_retry_wait(self) -> float:
        """Worst-case seconds one request sleeps between its attempts (excluding the attempts themselves)."""
        return (self.max_attempts - 1) * self.backoff_max

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(attempt-1))].
        with self._rng_lock:
            return self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _wait_for_pause(self) -> None:
        """Block while another thread sleeps off a 429 or 5xx."""
        with self._pause:
            pass

    def _pause_all(self, wait: float) -> None:
        """Sleep `wait` seconds holding the gate, so no thread sends a request meanwhile.

        A thread that finds the gate taken waits for it, then sleeps only what is left of its own wait:
        concurrent 429s pause the pool about once, not once each in a row.
        """
        deadline = self._clock() + wait
        if self._pause.acquire(blocking=False):
            try:
                self._sleep(wait)
            finally:
                self._pause.release()
            return
        with self._pause:
            left = deadline - self._clock()
            if left > 0:
                self._sleep(left)

    # -- one request ----------------------------------------------------------------------------

    def _url(self, path: str, params: dict[str, Any] | None) -> httpx.URL:
        """The absolute URL of `path` under the prefix with `params` as httpx encodes them.

        Built here rather than by `client.get(path, params=...)`, which parses and merges three URLs per
        request: a third of the client's CPU time on a 1,000-page listing.
        """
        url = self._urls.get(path)
        if url is None:
            base = self._http.base_url  # httpx gives it a trailing slash, as its own merging does
            url = base.copy_with(raw_path=base.raw_path + (self._prefix + path).lstrip("/").encode("ascii"))
            self._urls[path] = url
        return url.copy_with(query=str(httpx.QueryParams(params)).encode()) if params else url

    def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[Any, httpx.Headers]:
        """GET `path` under the prefix, retrying transient failures: the decoded JSON body and the headers.

        Raises TransientSourceError once `max_attempts` attempts failed transiently, and a
        PermanentSourceError subclass at once on a status or body no retry can fix.
        """
        return self.request("GET", path, params)

    def request(self, method: str, path: str, params: dict[str, Any] | None = None) -> tuple[Any, httpx.Headers]:
        """`method` on `path` as `get()` does it; an empty body decodes as None (a DELETE may answer one)."""
        url = self._url(path, params)
        cause = ""
        for attempt in range(1, self.max_attempts + 1):
            self._wait_for_pause()
            with self._sent_lock:
                self._sent += 1
            try:
                with self._http.stream(method, url) as response:
                    status, headers = response.status_code, response.headers
                    body = self._read(response, path) if 200 <= status < 300 else b""
            except httpx.TimeoutException as exc:
                cause = f"timed out ({type(exc).__name__})"
                wait = self._backoff(attempt)
            except httpx.UnsupportedProtocol as exc:  # a URL no retry can make work (hosts.py refuses them first)
                raise SourceRequestError(
                    f"{self.upstream} cannot be reached at {_shown(url)} {self.where}: {exc}", tenant=self.tenant
                ) from None
            except httpx.TransportError as exc:
                cause = f"connection failed ({type(exc).__name__}{f': {exc}' if str(exc) else ''})"
                wait = self._backoff(attempt)
            else:
                if 200 <= status < 300:
                    if method != "GET" and not body:
                        return None, headers
                    return self._decode(body, status, path), headers
                if status == 429 or (status >= 500 and status != 501):
                    cause = "rate limited (429)" if status == 429 else f"server error ({status})"
                    retry_after = retry_after_seconds(response)
                    wait = self._backoff(attempt) if retry_after is None else retry_after
                else:
                    self._raise_permanent(status, path, url)
            if attempt < self.max_attempts:
                self._pause_all(min(wait, self.backoff_max))
        raise TransientSourceError(
            f"{self.upstream} at {_shown(url)} {self.where} still failing after {self.max_attempts} attempts: {cause}",
            tenant=self.tenant,
        )

    def _raise_permanent(self, status: int, path: str, url: httpx.URL) -> None:
        upstream, where = self.upstream, self.where
        if status in (401, 403):
            raise SourceAuthError(
                f"{upstream} refused the API token ({status}) {where}"
                + (": the connection may be paused or lack a permission" if status == 403 else ""),
                tenant=self.tenant,
                status=status,
            )
        if status == 404:
            raise SourceNotFoundError(
                f"{upstream} does not know {_shown(url)} ({status}) {where}: wrong connection id?",
                tenant=self.tenant,
                status=status,
            )
        if status == 501:
            # 501 is how Unified says the integration does not support the object: no retry helps.
            raise SourceNotSupportedError(
                f"the integration behind {upstream} does not support {path} ({status}) {where}",
                tenant=self.tenant,
                status=status,
            )
        raise SourceRequestError(
            f"{upstream} rejected the request for {path} ({status}) {where}",
            tenant=self.tenant,
            status=status,
        )

    def _read(self, response: httpx.Response, path: str) -> bytes:
        """The body, read chunk by chunk up to `max_response_bytes` (module docstring)."""
        cap = self.max_response_bytes
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(path)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise self._too_large(path)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, path: str) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"{self.upstream} answered {path} {self.where} with more than {self.max_response_bytes} bytes "
            "(PROVISIONING_MAX_RESPONSE_BYTES); nothing was changed",
            tenant=self.tenant,
        )

    def _decode(self, body: bytes, status: int, path: str) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(body)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise MalformedPayloadError(
                f"{self.upstream} answered {path} {self.where} with a body that is not JSON",
                tenant=self.tenant,
                status=status,
            ) from None
