"""Who may change what, and what they changed: admin API keys and the admin audit log.

A key is `pk_` and 43 characters of a 256-bit random secret; only its SHA-256 is stored (nobody chose
the secret, so no salt or slow hash is needed to keep it from being guessed), and it is shown once.
The audit log names the actor (a key's name, or `cli`), the action and old -> new: never a key, a token
or a personal value (emails and names are the employee table's; the audit names employees by id).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.models import ApiKey, AuditEntry, utcnow
from store.repo import StoreConflict, StoreError, StoreNotFound, get_tenant

KEY_PREFIX = "pk_"
SESSION_SECONDS = 8 * 3600  # a signed-in page's key: a working day
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ALL_TENANTS = None


@dataclass(frozen=True)
class KeyHolder:
    """Whom an authenticated request acts for: the key's name and its tenant (None: every tenant)."""

    name: str
    tenant: str | None
    session: bool = False  # a signed-in settings page's key, which expires

    def sees(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, name: str, tenant: str | None, *, actor: str = "cli") -> str:
    """A new key, returned once; only its hash is stored."""
    if not KEY_NAME.fullmatch(name):
        raise StoreError(f"Key name {name!r}: use letters, digits, dots, dashes and underscores (at most 100).")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with Session(engine) as session, session.begin():
            if tenant is not None:
                get_tenant(session, tenant)
            session.add(ApiKey(id=str(uuid.uuid4()), name=name, tenant_id=tenant, key_hash=key_hash(key)))
            record(session.connection(), tenant=tenant, actor=actor, action="api_key_created", new={"key": name})
    except IntegrityError:
        raise StoreConflict(f"A key named {name!r} exists already; choose another name.") from None
    return key


def create_session_key(engine: Engine, holder: KeyHolder, *, seconds: int = SESSION_SECONDS) -> tuple[str, datetime]:
    """A key for a signed-in settings page: the holder's tenant only, expiring, named after the holder's key
    (so the audit log says whose page made a change). Returned once with its expiry."""
    if holder.tenant is None:
        raise StoreError("The settings page signs in with a tenant's key, not an all-tenants key.")
    if holder.session:
        raise StoreError("A session's key cannot start another session; sign in with the tenant's key.")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=seconds)
    name = f"{holder.name[:80]}.session-{secrets.token_hex(4)}"
    with Session(engine) as session, session.begin():
        get_tenant(session, holder.tenant)
        session.add(
            ApiKey(id=str(uuid.uuid4()), name=name, tenant_id=holder.tenant, key_hash=key_hash(key), expires_at=expires)
        )
        record(
            session.connection(), tenant=holder.tenant, actor=holder.name, action="session_started", new={"key": name}
        )
    return key, expires


def end_session_key(engine: Engine, holder: KeyHolder) -> None:
    """Sign-out: the session's key is revoked, so a copy of the cookie is worth nothing afterwards."""
    if not holder.session:
        raise StoreConflict("Only a session's key ends this way; revoke other keys with `provision api-key revoke`.")
    revoke_key(engine, holder.name, actor=holder.name)


def list_keys(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        return [
            {
                "name": k.name,
                "tenant": k.tenant_id,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name))
        ]


def revoke_key(engine: Engine, name: str, *, actor: str = "cli") -> None:
    with Session(engine) as session, session.begin():
        key = session.scalars(select(ApiKey).where(ApiKey.name == name)).first()
        if key is None:
            raise StoreNotFound(f"No key named {name!r}; `provision api-key list` lists them.")
        if key.revoked_at is not None:
            raise StoreConflict(f"The key {name!r} was revoked already.")
        key.revoked_at = utcnow()
        record(session.connection(), tenant=key.tenant_id, actor=actor, action="api_key_revoked", old={"key": name})


def authenticate(engine: Engine, key: str) -> KeyHolder | None:
    """The holder of a live key, or None (unknown, revoked or malformed: a caller cannot tell which)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 100:
        return None
    digest = key_hash(key)
    with engine.connect() as conn:
        row = conn.execute(
            select(ApiKey.name, ApiKey.tenant_id, ApiKey.key_hash, ApiKey.revoked_at, ApiKey.expires_at).where(
                ApiKey.key_hash == digest
            )
        ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        return None
    expires = row.expires_at
    if expires is not None and expires <= utcnow():
        return None
    return KeyHolder(name=row.name, tenant=row.tenant_id, session=expires is not None)


# ---- the audit log ---------------------------------------------------------------------------------


def record(
    conn: Connection,
    *,
    tenant: str | None,
    actor: str,
    action: str,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
) -> None:
    """One audit entry, in the caller's transaction (so a change and its record commit together)."""
    conn.execute(insert(AuditEntry).values(tenant_id=tenant, actor=actor, action=action, at=utcnow(), old=old, new=new))


def audit(engine: Engine, *, tenant: str | None, actor: str, action: str, **change: dict[str, Any] | None) -> None:
    """One audit entry in a transaction of its own, for a change made elsewhere (old=..., new=...)."""
    with engine.begin() as conn:
        record(conn, tenant=tenant, actor=actor, action=action, old=change.get("old"), new=change.get("new"))


def audit_entries(engine: Engine, tenant: str, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    with Session(engine) as session:
        get_tenant(session, tenant)
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.tenant_id == tenant)
            .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [{"at": _iso(e.at), "actor": e.actor, "action": e.action, "old": e.old, "new": e.new} for e in entries]


def _iso(value: datetime) -> str:
    return value.isoformat()
