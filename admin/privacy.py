"""The data-protection operations (design.md, "Data protection") below the CLI and the admin API: the access
export of one person, the tenant's suppression and retention settings, lifting a suppression, and deleting a
whole tenant (offboarding). Each is audited like every admin operation, naming no person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from admin.operations import TenantBusy, busy_run
from admin.runs import prefect_server_configured
from domain.errors import NotFoundError, UnavailableError
from settings import get_settings, unified_token
from sources.hosts import checked_base_url
from sources.unified import delete_connection
from store.access import audit
from store.export import person_export
from store.locks import tenant_lock
from store.models import Integration
from store.offboard import delete_tenant_rows, tenant_rows
from store.repo import get_tenant
from store.suppressions import PrivacySettings, lift_suppression, privacy_settings, set_privacy


class UnknownPerson(NotFoundError):
    """The tenant holds nothing about the person asked about."""


def export_person(engine: Engine, tenant: str, email: str, *, actor: str) -> dict[str, Any]:
    """Everything stored about the person with `email` in `tenant` (store/export.py), or UnknownPerson. The audit
    entry says an export was made, not of whom."""
    document = person_export(engine, tenant, email)
    if document is None:
        raise UnknownPerson(f"Tenant {tenant!r} holds nothing about anyone with that email.")
    audit(engine, tenant=tenant, actor=actor, action="person_exported")
    return document


def change_privacy(
    engine: Engine, tenant: str, *, actor: str, suppress_erased: bool | None = None, retention_days: int | None = None
) -> PrivacySettings:
    """Turn the suppression of erased people on or off, or change the retention period; audited old -> new."""
    before = privacy_settings(engine, tenant)
    after = set_privacy(engine, tenant, suppress_erased=suppress_erased, retention_days=retention_days)
    wanted = {"suppress_erased", "retention_days"}
    old = {k: v for k, v in before.as_dict().items() if k in wanted}
    new = {k: v for k, v in after.as_dict().items() if k in wanted}
    if old != new:
        audit(engine, tenant=tenant, actor=actor, action="privacy_changed", old=old, new=new)
    return after


def lift(engine: Engine, tenant: str, email: str, *, actor: str) -> None:
    """Take one erased person off the tenant's suppression list: the next sync may create or link them again."""
    lift_suppression(engine, tenant, email)
    audit(engine, tenant=tenant, actor=actor, action="suppression_lifted")


# ---- offboarding ----------------------------------------------------------------------------------------


@dataclass
class TenantDeletion:
    """What deleting a tenant removed (or, in a dry run, would remove)."""

    tenant: str
    dry_run: bool
    rows: dict[str, int]  # per table of the employee store
    unified_connection: str | None = None  # the Unified.to connection deleted, or None when it had no live one
    unified_known: bool = True  # False when Unified.to no longer knew the connection
    prefect: dict[str, Any] | None = None  # deployments, flow runs and artifacts removed; None: no server
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "unified_connection": self.unified_connection,
            "unified_known": self.unified_known,
            "prefect": self.prefect,
            "notes": self.notes,
        }


NO_PREFECT = (
    "No Prefect server configured (PREFECT_API_URL): nothing was removed there; with it set, `provision deploy` "
    "removes a deleted tenant's scheduled deployment."
)


def delete_tenant(engine: Engine, tenant: str, *, dry_run: bool, actor: str) -> TenantDeletion:
    """Offboard a customer: what Prefect holds of it, its Unified.to connection, then every row of it in every
    table (one transaction). Refused while a run of the tenant is queued or running, and held against new ones
    by the tenant's lock meanwhile. Outside first: a failure there leaves the tenant's rows whole, and repeating
    the command finishes the job (a connection Unified.to no longer knows counts as deleted)."""
    with Session(engine) as session:
        get_tenant(session, tenant)
        integration = session.get(Integration, tenant)
        connection = integration.connection_id if integration is not None and integration.state == "active" else None
        base_url = integration.base_url if integration is not None else None
    running = busy_run(engine, tenant)
    if running is not None:
        raise TenantBusy(tenant, running)
    with tenant_lock(engine, tenant) as owner:
        done = TenantDeletion(tenant=tenant, dry_run=dry_run, rows={}, unified_connection=connection)
        if prefect_server_configured():
            done.prefect = _forget_in_prefect(tenant, dry_run=dry_run)
        else:
            done.notes.append(NO_PREFECT)
        if connection is not None and not dry_run:
            assert base_url is not None
            url = checked_base_url(base_url, tenant=tenant, allowed_hosts=get_settings().allowed_hosts())
            done.unified_known = delete_connection(url, unified_token(), tenant=tenant, connection_id=connection)
        if dry_run:
            done.rows = tenant_rows(engine, tenant, keep_lock=owner)
        else:
            done.rows = delete_tenant_rows(engine, tenant, actor=actor, keep_lock=owner)
    return done


def _forget_in_prefect(tenant: str, *, dry_run: bool) -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL

    from deployments.reconcile import forget_tenant

    try:
        return forget_tenant(tenant, dry_run=dry_run).as_dict()
    except (httpx.HTTPError, OSError) as exc:
        raise UnavailableError(
            f"The Prefect server at {PREFECT_API_URL.value()} could not be reached ({type(exc).__name__}); "
            f"nothing of tenant {tenant!r} was deleted in the employee database. Try again once it is up."
        ) from None
