"""Connecting a tenant through Unified.to's authorization flow (upstream-apis.md 1.9a).

The product builds the authorization URL with the read scopes it needs, the tenant as `external_xref`
and a `state` it signs (HMAC-SHA256 over tenant, provider, expiry and a nonce) and accepts once (the
nonce is stored, and marked used by the callback that accepts it). The callback checks the state, then
the connection Unified.to made (admin/operations.py), and only then saves the integration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

from pydantic import SecretStr
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from domain.errors import ExplainedError
from domain.words import INTEGRATION_TYPES, PROVIDERS
from settings import Settings
from store.models import ConnectState, utcnow
from store.repo import get_tenant

STATE_SECONDS = 15 * 60  # time an admin has to sign in at the provider
SCOPES = ("hris_employee_read", "hris_group_read")  # what a sync reads, nothing more


class ConnectError(ExplainedError):
    """A connect flow that cannot go on: a bad or used state, a missing setting, a refused connection."""


@dataclass(frozen=True)
class State:
    tenant: str
    provider: str
    nonce: str
    expires: datetime
    base_url: str  # the Unified.to region the admin was sent to; the callback reads the connection there


def _secret(settings: Settings) -> bytes:
    if settings.state_secret is None or not settings.state_secret.get_secret_value():
        raise ConnectError("PROVISIONING_STATE_SECRET is not set: the service cannot sign a connect flow's state.")
    return settings.state_secret.get_secret_value().encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_state(secret: SecretStr | bytes, state: State) -> str:
    key = secret if isinstance(secret, bytes) else secret.get_secret_value().encode()
    payload = json.dumps(
        {
            "t": state.tenant,
            "p": state.provider,
            "n": state.nonce,
            "e": int(state.expires.timestamp()),
            "b": state.base_url,
        },
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def read_state(secret: bytes, text: str) -> State:
    """The state if its signature holds (not yet whether it expired or was used)."""
    try:
        payload_b64, mac_b64 = text.split(".")
        payload, mac = _unb64(payload_b64), _unb64(mac_b64)
    except ValueError:
        raise ConnectError("The connect link's state is malformed; start connecting again.") from None
    if not hmac.compare_digest(mac, hmac.new(secret, payload, hashlib.sha256).digest()):
        raise ConnectError("The connect link's state is not one this service signed; start connecting again.")
    try:
        data = json.loads(payload)
        return State(
            tenant=data["t"],
            provider=data["p"],
            nonce=data["n"],
            expires=datetime.fromtimestamp(data["e"], utcnow().tzinfo),
            base_url=data["b"],
        )
    except (KeyError, TypeError, ValueError):  # signed by an older version of this service
        raise ConnectError("The connect link's state is malformed; start connecting again.") from None


def authorization_url(
    engine: Engine, settings: Settings, tenant: str, provider: str, base_url: str, return_url: str | None = None
) -> str:
    """Where to send the admin's browser to connect `tenant` to `provider`; records the state's nonce and
    where the callback sends the admin back (`return_url`, which must be on the allow-list)."""
    if provider not in PROVIDERS:
        raise ConnectError(f"Unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}.")
    if return_url is not None and not allowed_redirect(settings, return_url):
        raise ConnectError("The return URL is not on the service's allow-list (PROVISIONING_REDIRECT_ALLOWLIST).")
    secret = _secret(settings)
    if not settings.unified_workspace_id:
        raise ConnectError("PROVISIONING_UNIFIED_WORKSPACE_ID is not set: the authorization URL names the workspace.")
    if not settings.public_url:
        raise ConnectError(
            "PROVISIONING_PUBLIC_URL is not set: Unified.to needs the service's URL to send the admin back."
        )
    state = State(
        tenant=tenant,
        provider=provider,
        nonce=secrets.token_hex(16),
        expires=utcnow() + timedelta(seconds=STATE_SECONDS),
        base_url=base_url,
    )
    with Session(engine) as session, session.begin():
        get_tenant(session, tenant)
        session.add(
            ConnectState(
                nonce=state.nonce, tenant_id=tenant, provider=provider, return_url=return_url, expires_at=state.expires
            )
        )
    callback = settings.public_url.rstrip("/") + "/connect/callback"
    query = urlencode(
        {
            "success_redirect": callback,
            "failure_redirect": callback,
            "scopes": ",".join(SCOPES),
            "external_xref": tenant,
            "state": sign_state(secret, state),
        }
    )
    path = f"/unified/integration/auth/{settings.unified_workspace_id}/{INTEGRATION_TYPES[provider]}"
    return f"{base_url.rstrip('/')}{path}?{query}"


def accept_state(engine: Engine, settings: Settings, text: str) -> tuple[State, str | None]:
    """The state of a callback, once (signed by this service, not expired, never accepted before), and the
    URL to send the admin back to."""
    state = read_state(_secret(settings), text)
    now = utcnow()
    if state.expires < now:
        raise ConnectError("The connect link expired; start connecting again.")
    with engine.begin() as conn:
        taken = conn.execute(
            update(ConnectState)
            .where(
                ConnectState.nonce == state.nonce,
                ConnectState.tenant_id == state.tenant,
                ConnectState.used_at.is_(None),
            )
            .values(used_at=now)
        ).rowcount
        if not taken:
            raise ConnectError("The connect link was used already; start connecting again.")
        return_url = conn.execute(select(ConnectState.return_url).where(ConnectState.nonce == state.nonce)).scalar()
    return state, return_url


def allowed_redirect(settings: Settings, url: str) -> bool:
    """Only URLs on a configured origin and under its path: the callback is no open redirect."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or parts.password:
        return False
    for prefix in settings.redirect_prefixes():
        allowed = urlsplit(prefix)
        same_origin = (parts.scheme, parts.netloc.lower()) == (allowed.scheme, allowed.netloc.lower())
        if same_origin and (parts.path or "/").startswith(allowed.path or "/"):
            return True
    return False
