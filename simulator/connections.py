"""The simulator's Unified.to connections: the Connection object, what the next authorization creates, and
the pieces of the authorization flow that are not HTTP (the sign-in page, the redirect back).

What the real Unified.to does here is partly unconfirmed (upstream-apis.md 1.9, 1.9a); the choices the
simulator makes where the documentation is silent are written where they are made.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from domain.words import INTEGRATION_TYPES

# What a connection may read when the authorization asked for no scopes ("leaving scopes empty asks for all"):
# all of the HRIS permissions the product's reads need.
HRIS_READ_PERMISSIONS: tuple[str, ...] = ("hris_employee_read", "hris_group_read")

# How the sign-in page names each integration (display only; the product goes by `integration_type`).
INTEGRATION_NAMES: dict[str, str] = {
    INTEGRATION_TYPES["entra"]: "Microsoft Entra ID",
    INTEGRATION_TYPES["personio"]: "Personio",
    INTEGRATION_TYPES["google"]: "Google Workspace",
}

# How an authorization ends: a new connection, the admin cancelling, or the provider refusing the credentials.
AuthOutcome = Literal["authorize", "cancel", "error"]
AUTH_OUTCOMES: tuple[AuthOutcome, ...] = ("authorize", "cancel", "error")

# The `error` appended to `failure_redirect`. Unified documents only that "an error variable will be
# appended", not its values; these follow OAuth2's words for a declined and a failed authorization.
CANCELLED = "access_denied"
FAILED = "authorization_failed"


def integration_type_of(provider: str) -> str:
    """The Unified `integration_type` of one of the product's providers (domain.words.INTEGRATION_TYPES)."""
    try:
        return INTEGRATION_TYPES[provider]
    except KeyError:
        raise ValueError(f"unknown provider {provider!r}; choose one of {', '.join(INTEGRATION_TYPES)}") from None


def new_connection_id() -> str:
    return f"conn-{secrets.token_hex(8)}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Connection:
    """One Unified.to connection as the simulator keeps it; `wire()` is what `GET /unified/connection/{id}` answers.

    Mutable on purpose: a test may pause a served connection (`connection.is_paused = True`).
    """

    id: str
    workspace_id: str
    integration_type: str
    permissions: list[str]
    external_xref: str | None = None
    is_paused: bool = False
    environment: str = "Production"
    categories: list[str] = field(default_factory=lambda: ["hris"])
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime | None = None  # None: the creation time
    last_healthy_at: datetime | None = None  # None: the creation time (a new connection was just tested)

    @property
    def integration_name(self) -> str:
        return INTEGRATION_NAMES.get(self.integration_type, self.integration_type)

    def wire(self) -> dict[str, Any]:
        """The Connection object in Unified's wire format (upstream-apis.md 1.9).

        `auth` is left out: the real one holds the provider's credentials, which the product never needs
        and must never store. So nothing secret can leak through the simulator's answer.
        """
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "integration_type": self.integration_type,
            "integration_name": self.integration_name,
            "categories": list(self.categories),
            "permissions": list(self.permissions),
            "external_xref": self.external_xref,
            "environment": self.environment,
            "is_paused": self.is_paused,
            "last_healthy_at": _iso(self.last_healthy_at or self.created_at),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at or self.created_at),
        }


@dataclass(frozen=True)
class NextConnection:
    """Overrides for the connection the next successful authorization creates (used once, then cleared).

    A field left None takes what the authorization asked for; this is how a test makes Unified hand back a
    connection that lacks a permission, is paused, or is of another provider than the one asked for.
    """

    id: str | None = None
    integration_type: str | None = None
    permissions: Sequence[str] | None = None
    is_paused: bool | None = None


@dataclass(frozen=True)
class AuthRequest:
    """The query of `GET /unified/integration/auth/{workspace_id}/{integration_type}`, read once."""

    workspace_id: str
    integration_type: str
    success_redirect: str
    failure_redirect: str | None
    permissions: list[str]
    state: str | None
    external_xref: str | None

    def outcome_url(self, outcome: AuthOutcome, connection_id: str | None = None) -> str:
        """Where the browser goes back to: `success_redirect` with `id` and `state` appended, or
        `failure_redirect` with `error` and `state`. Without a `failure_redirect` (it is optional in
        Unified's SDK) a failure goes back to `success_redirect`, still with `error` and no `id`."""
        if outcome == "authorize":
            return append_query(self.success_redirect, id=connection_id, state=self.state)
        error = CANCELLED if outcome == "cancel" else FAILED
        return append_query(self.failure_redirect or self.success_redirect, error=error, state=self.state)


def scopes_of(values: Iterable[str]) -> list[str]:
    """The permissions asked for: `scopes` repeated (as the SDK sends a list) or comma-separated; none
    given means all of the HRIS read permissions. Order kept, duplicates dropped."""
    wanted = [s.strip() for raw in values for s in raw.split(",") if s.strip()]
    return list(dict.fromkeys(wanted)) or list(HRIS_READ_PERMISSIONS)


def append_query(url: str, **params: str | None) -> str:
    """`url` with `params` (those not None) appended to its query, its own query parameters kept."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""


def page(title: str, body_html: str) -> str:
    """A bare HTML page; `title` is escaped here, `body_html` must already be."""
    return _PAGE.format(title=html.escape(title), body=body_html)


def sign_in_page(auth: AuthRequest, authorize_url: str, cancel_url: str) -> str:
    """The simulated provider sign-in: what is asked for, and the two ways out. Every value is escaped."""
    e = html.escape
    name = INTEGRATION_NAMES.get(auth.integration_type, auth.integration_type)
    items = "".join(f"<li>{e(p)}</li>" for p in auth.permissions)
    body = (
        f"<p>Workspace <code>{e(auth.workspace_id)}</code> asks to read from {e(name)}:</p>\n"
        f"<ul>{items}</ul>\n"
        f"<p>For <code>{e(auth.external_xref or '')}</code></p>\n"
        f'<p><a href="{e(authorize_url)}">Authorize</a> <a href="{e(cancel_url)}">Cancel</a></p>'
    )
    return page(f"Sign in to {name} (simulated)", body)
