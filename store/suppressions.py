"""A tenant's data-protection settings and its suppression list (domain/suppression.py says what is kept and why).

The list is written by an erasure (store/erase.py, in its transaction), read by a run (tasks/suppress.py) and
lifted one person at a time by an admin. Its digests need the deployment's secret, so every function that makes
one asks `suppression_secret()` first: without it, nothing is written and a run of a tenant that suppresses
someone fails rather than bring them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl
from sqlalchemy import Connection, Engine, delete, insert, select
from sqlalchemy.orm import Session

from domain.emails import normalize_email
from domain.suppression import EMAIL, SOURCE_USER, SuppressionKeyError, digest, key_id
from settings import get_settings
from store.models import Suppression, Tenant, utcnow
from store.repo import StoreError, StoreNotFound, get_tenant

MAX_RETENTION_DAYS = 3650
SUPPRESSION_SCHEMA: dict[str, pl.DataType] = {
    "email_digest": pl.String(),
    "source_digest": pl.String(),
    "key_id": pl.String(),
}


def suppression_secret() -> bytes:
    """The deployment's suppression secret, or the sentence saying how to set it."""
    secret = get_settings().suppression_secret
    value = secret.get_secret_value() if secret is not None else ""
    if len(value) < 16:
        raise SuppressionKeyError(
            "Suppressing erased people needs PROVISIONING_SUPPRESSION_SECRET (at least 16 characters, the same on "
            "every host that syncs or erases; e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
        )
    return value.encode()


@dataclass(frozen=True)
class PrivacySettings:
    suppress_erased: bool  # an erasure also suppresses the person in later syncs
    retention_days: int  # names and emails in the run history are scrubbed after this many days
    suppressed: int  # people on the suppression list (applied only while `suppress_erased` is on)

    def as_dict(self) -> dict[str, object]:
        return {
            "suppress_erased": self.suppress_erased,
            "retention_days": self.retention_days,
            "suppressed": self.suppressed,
        }


def privacy_settings(engine: Engine, tenant_id: str) -> PrivacySettings:
    with Session(engine) as session:
        tenant = get_tenant(session, tenant_id)
        listed = session.scalars(select(Suppression.email_digest).where(Suppression.tenant_id == tenant_id)).all()
        return PrivacySettings(tenant.suppress_erased, tenant.retention_days, len(listed))


def check_privacy(*, suppress_erased: bool | None = None, retention_days: int | None = None) -> None:
    """Refuse settings that cannot work: a retention period out of range, or suppression without the secret
    (said when it is turned on, not at the first erasure)."""
    if retention_days is not None and not 1 <= retention_days <= MAX_RETENTION_DAYS:
        raise StoreError(f"The retention period must be 1 to {MAX_RETENTION_DAYS} days, not {retention_days}.")
    if suppress_erased:
        suppression_secret()


def set_privacy(
    engine: Engine, tenant_id: str, *, suppress_erased: bool | None = None, retention_days: int | None = None
) -> PrivacySettings:
    """Change either setting (None keeps it); both are checked before anything is written."""
    check_privacy(suppress_erased=suppress_erased, retention_days=retention_days)
    with Session(engine) as session, session.begin():
        tenant = get_tenant(session, tenant_id)
        if suppress_erased is not None:
            tenant.suppress_erased = suppress_erased
        if retention_days is not None:
            tenant.retention_days = retention_days
    return privacy_settings(engine, tenant_id)


def record_suppression(conn: Connection, tenant_id: str, *, email: str, source_user_id: str | None) -> None:
    """Put one erased person on the tenant's list, in the caller's transaction (the erasure's). Erased again
    (re-added by hand, erased again), the entry keeps the source digest it had if this time there is none."""
    secret = suppression_secret()
    email_digest = digest(secret, tenant_id, EMAIL, normalize_email(email.strip()))
    source_digest = None if source_user_id is None else digest(secret, tenant_id, SOURCE_USER, source_user_id)
    where = (Suppression.tenant_id == tenant_id, Suppression.email_digest == email_digest)
    earlier = conn.execute(select(Suppression.source_digest).where(*where)).scalar()
    conn.execute(delete(Suppression).where(*where))
    conn.execute(
        insert(Suppression).values(
            tenant_id=tenant_id,
            email_digest=email_digest,
            source_digest=source_digest or earlier,
            key_id=key_id(secret),
            created_at=utcnow(),
        )
    )


def suppressed_since(engine: Engine, tenant_id: str, email: str) -> datetime | None:
    """When the person with this email was put on the tenant's list, or None (also when no secret is set: then
    nothing can be looked up, and the list is empty or unusable anyway)."""
    try:
        secret = suppression_secret()
    except SuppressionKeyError:
        return None
    email_digest = digest(secret, tenant_id, EMAIL, normalize_email(email.strip()))
    with engine.connect() as conn:
        return conn.execute(
            select(Suppression.created_at).where(
                Suppression.tenant_id == tenant_id, Suppression.email_digest == email_digest
            )
        ).scalar()


def lift_suppression(engine: Engine, tenant_id: str, email: str) -> None:
    """Take the person with this email off the tenant's list: the next sync may create or link them again."""
    email_digest = digest(suppression_secret(), tenant_id, EMAIL, normalize_email(email.strip()))
    with Session(engine) as session, session.begin():
        get_tenant(session, tenant_id)
        gone = session.execute(
            delete(Suppression).where(Suppression.tenant_id == tenant_id, Suppression.email_digest == email_digest)
        )
        if not gone.rowcount:  # type: ignore[attr-defined]
            raise StoreNotFound(f"Tenant {tenant_id!r} suppresses nobody with that email; nothing was lifted.")


def read_suppressions(engine: Engine, tenant_id: str) -> pl.DataFrame:
    """The digests a run leaves out (SUPPRESSION_SCHEMA): the tenant's list while its `suppress_erased` is on,
    else none. One query."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Suppression.email_digest, Suppression.source_digest, Suppression.key_id)
            .join(Tenant, Tenant.id == Suppression.tenant_id)
            .where(Suppression.tenant_id == tenant_id, Tenant.suppress_erased.is_(True))
        ).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=SUPPRESSION_SCHEMA, orient="row")
