"""Where a source's credentials may go: the Unified.to workspace token only to Unified.to's API hosts.

The token can read every tenant's connection, so the base URL a tenant is connected with is checked when
connecting and again before every run: one of Unified.to's regional API hosts over https; a loopback
address (the simulator) over http or https; any other host only when the operator names it in
`PROVISIONING_ALLOWED_SOURCE_HOSTS`, and then over https only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from domain.errors import ExplainedError

# Unified.to's API hosts by region (upstream-apis.md 1.1): North America (default), Europe, Australia.
UNIFIED_REGIONS = {
    "us": "https://api.unified.to",
    "eu": "https://api-eu.unified.to",
    "au": "https://api-au.unified.to",
}
UNIFIED_HOSTS = frozenset(urlsplit(url).hostname for url in UNIFIED_REGIONS.values())


class SourceHostError(ExplainedError):
    """A base URL the token must not be sent to."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# The first path segments the clients add themselves (`/hris/{connection}/...`, `/unified/connection/...`): a
# base URL that already holds one is answered 404, which would read as a wrong connection id.
CLIENT_PATHS = frozenset({"hris", "unified"})


def checked_base_url(url: str, *, tenant: str, allowed_hosts: Iterable[str] = ()) -> str:
    """The base URL without a trailing slash, or a SourceHostError saying why the token may not go there, or
    why no request to it could work (no http(s) URL, a port that is none, a path the client adds itself)."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError as exc:  # an unclosed [IPv6 address, a port that is no number or out of range
        raise SourceHostError(f"tenant {tenant}: the base URL {url!r} cannot work: {exc}.") from None
    if parts.scheme not in ("http", "https") or not host:
        raise SourceHostError(
            f"tenant {tenant}: {url!r} is not an http(s) URL of a Unified.to API host "
            f"(such as {UNIFIED_REGIONS['us']})."
        )
    if port == 0:
        raise SourceHostError(f"tenant {tenant}: the base URL {url!r} cannot work: port 0 is no port to connect to.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise SourceHostError(f"tenant {tenant}: the base URL may hold no credentials, query or fragment.")
    if not is_loopback(host):
        if parts.scheme != "https":
            raise SourceHostError(f"tenant {tenant}: the Unified.to token is only sent over https (loopback aside).")
        extra = {h.strip().lower() for h in allowed_hosts if h.strip()}
        if host not in UNIFIED_HOSTS and host not in extra:
            regions = ", ".join(f"{name} ({u})" for name, u in UNIFIED_REGIONS.items())
            raise SourceHostError(
                f"tenant {tenant}: {host} is not a Unified.to API host ({regions}); the workspace token is sent "
                "nowhere else unless PROVISIONING_ALLOWED_SOURCE_HOSTS names the host."
            )
    root = f"{parts.scheme}://{parts.netloc}"
    segments = parts.path.rstrip("/").split("/")
    if host in UNIFIED_HOSTS and len(segments) > 1:
        raise SourceHostError(
            f"tenant {tenant}: the base URL {text} looks wrong: Unified.to's API starts at the host, without a "
            f"path; use {root}."
        )
    added = [i for i, segment in enumerate(segments) if segment.lower() in CLIENT_PATHS]
    if added:
        raise SourceHostError(
            f"tenant {tenant}: the base URL {text} looks wrong: the client adds /{segments[added[0]]}/... itself; "
            f"use {root}{'/'.join(segments[: added[0]])}."
        )
    return text.rstrip("/")
