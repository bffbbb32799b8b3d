"""Each admin operation once, with its checks and its audit entry; the CLI and the admin API call these.

`actor` is who asked: an API key's name, or `cli`. Every change is audited with old -> new, naming
employees by id and connections by id, never by a personal value or a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import polars as pl
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from admin.connect import ConnectError
from domain.errors import ConflictError, UnavailableError
from domain.policy import Policy
from domain.schedules import Schedule
from domain.words import INTEGRATION_TYPES, PROVIDERS
from settings import get_settings, unified_token
from sources.hosts import checked_base_url
from sources.unified import UnifiedConnection, delete_connection, read_connection
from store.access import audit, record
from store.erase import check_one_person, erase_employee
from store.locks import TenantBusyError, is_locked, tenant_lock
from store.models import Employee, Integration, SourceGroup, utcnow
from store.repo import (
    StoreConflict,
    StoreNotFound,
    add_employee,
    connect,
    delete_employee_rows,
    disconnect,
    get_tenant,
    integration_settings,
    pending_run,
    policy_of,
    schedule_of,
    select_groups,
    set_guard,
    set_policy,
    start_run,
    status_totals,
)
from store.schedules import set_schedule
from store.suppressions import check_privacy, privacy_settings, set_privacy

CLI = "cli"


class TenantBusy(ConflictError):
    """A sync of the tenant is queued or running; `run_id` names it."""

    def __init__(self, tenant: str, run_id: str) -> None:
        super().__init__(f"Tenant {tenant!r} is already being synced (run {run_id}); wait for it to end.")
        self.run_id = run_id


# ---- admin changes and a running sync ----------------------------------------------------------------
# A sync holds its tenant's lock (store/locks.py) from before it reads the employees until its load has committed.
# An erasure, a disconnect or a new group selection made in between would be undone or contradicted by that load
# (the erased person's names written into its run changes, unmanaged employees linked again, a run syncing a
# selection that is no longer the tenant's), so they take the same lock for their writes: they wait for a running
# sync a bounded time and are then refused, with nothing done. Bounded, because a large tenant's sync takes
# minutes, and a person (or the settings page, through the API) should hear so rather than watch a spinner.

LOCK_WAIT_SECONDS = 15.0  # how long an admin change waits for a running sync of the tenant by default


class SyncRunning(TenantBusyError):
    """An admin change refused because a sync of the tenant (or another change of it) held the tenant's lock for
    longer than the change waits; `run_id` names the sync when there is one. A conflict: 409 at the API."""

    def __init__(self, tenant: str, doing: str, run_id: str | None, waited: float) -> None:
        holder = (
            f"A sync of tenant {tenant!r} is running (run {run_id})"
            if run_id is not None
            else f"Another change of tenant {tenant!r} is in progress"
        )
        super().__init__(
            f"{holder}; {doing} was not made (waited {waited:g} s), so as not to interleave with it: "
            "try again when it has ended."
        )
        self.run_id = run_id


@contextmanager
def holding_tenant(engine: Engine, tenant: str, *, doing: str, wait: float | None = None) -> Iterator[None]:
    """Hold the tenant's lock for the body: wait up to `wait` seconds (None: LOCK_WAIT_SECONDS; 0: not at all)
    for a running sync, then refuse with SyncRunning before the body has done anything."""
    waited = LOCK_WAIT_SECONDS if wait is None else max(0.0, wait)
    with ExitStack() as held:
        try:
            held.enter_context(tenant_lock(engine, tenant, wait=True, wait_timeout=waited))
        except TenantBusyError:
            raise SyncRunning(tenant, doing, busy_run(engine, tenant), waited) from None
        yield


# ---- connecting ------------------------------------------------------------------------------------


def check_connection(connection: UnifiedConnection, *, tenant: str, provider: str) -> None:
    """Refuse a Unified.to connection that is of another provider, lacks a read permission, is paused,
    or names another tenant as its `external_xref` (design.md, Connecting through Unified.to)."""
    where = f"Connection {connection.id!r}"
    wanted = INTEGRATION_TYPES[provider]
    if connection.integration_type is not None and connection.integration_type != wanted:  # where Unified says it
        raise ConnectError(f"{where} is a {connection.integration_type} connection, not {provider} ({wanted}).")
    # Personio has no group list (its groups arrive inside the employees), so it needs no group permission.
    needed = ("hris_employee_read",) if provider == "personio" else ("hris_employee_read", "hris_group_read")
    missing = [p for p in needed if p not in connection.permissions]
    if missing:
        raise ConnectError(f"{where} lacks the permission {', '.join(missing)}; connect again and grant it.")
    if connection.is_paused:
        raise ConnectError(f"{where} is paused at Unified.to; resume it there first.")
    if connection.external_xref is not None and connection.external_xref != tenant:
        raise ConnectError(f"{where} was made for another customer; connect again from this tenant.")


@dataclass(frozen=True)
class Connected:
    tenant: str
    provider: str
    connection_id: str
    users: int | None  # source users read while checking (None: not read)
    groups: int | None
    note: str | None = None  # e.g. that the previous connection's group selection was cleared


def connect_tenant(
    engine: Engine,
    tenant: str,
    *,
    provider: str,
    connection_id: str,
    base_url: str,
    actor: str,
    verify: bool = True,
) -> Connected:
    """Check the connection at Unified.to, read its groups once, and save the integration with them.

    `verify=False` (an operator's `--no-check`) saves without reading Unified.to; the host allow-list and
    the one-tenant-per-connection rule hold all the same."""
    if provider not in PROVIDERS:
        raise ConnectError(f"Unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}.")
    with Session(engine) as session:
        get_tenant(session, tenant)
    url = checked_base_url(base_url, tenant=tenant, allowed_hosts=get_settings().allowed_hosts())
    users = groups = None
    listed: pl.DataFrame | None = None
    if verify:
        # The pipeline (and through its tasks Prefect and pandera) only where the source is read: the commands
        # that only read or change the employee database start in well under a second (tests/test_imports.py).
        from pipeline import read_groups
        from tasks.extract import SourceConfig

        connection = read_connection(url, unified_token(), tenant=tenant, connection_id=connection_id)
        check_connection(connection, tenant=tenant, provider=provider)
        config = SourceConfig(
            tenant=tenant, source="unified", provider=provider, connection_id=connection_id, base_url=url
        )
        snapshot, flat = read_groups(None, config)
        listed, users, groups = flat.groups, snapshot.users.height, flat.groups.height
    _, note = connect(engine, tenant, provider=provider, connection_id=connection_id, base_url=url, groups=listed)
    change = {"provider": provider, "connection": connection_id, **({"selection": "cleared"} if note else {})}
    audit(engine, tenant=tenant, actor=actor, action="connected", new=change)
    return Connected(tenant, provider, connection_id, users, groups, note)


@dataclass(frozen=True)
class Disconnected:
    employees: int  # now unmanaged
    revoked_at_unified: bool  # False when Unified.to no longer knew the connection


def disconnect_tenant(engine: Engine, tenant: str, *, actor: str, wait: float | None = None) -> Disconnected:
    """Delete the connection at Unified.to (a 404 there still ends it here) and end the integration.

    Under the tenant's lock (`holding_tenant`): a running sync's load would link the employees again. Refused
    while a sync runs longer than `wait`, before Unified.to is asked anything."""
    integration_settings(engine, tenant, require_selection=False)  # unknown or not connected: said without waiting
    with holding_tenant(engine, tenant, doing="the disconnect", wait=wait):
        integration = integration_settings(engine, tenant, require_selection=False)
        url = checked_base_url(integration.base_url, tenant=tenant, allowed_hosts=get_settings().allowed_hosts())
        revoked = delete_connection(url, unified_token(), tenant=tenant, connection_id=integration.connection_id)
        employees = disconnect(engine, tenant)
        audit(
            engine,
            tenant=tenant,
            actor=actor,
            action="disconnected",
            old={"provider": integration.provider, "connection": integration.connection_id},
            new={"employees_unmanaged": employees, "revoked_at_unified": revoked},
        )
    return Disconnected(employees, revoked)


# ---- groups and settings ----------------------------------------------------------------------------


def apply_schedule(engine: Engine, tenant: str) -> dict[str, list[str]] | None:
    """Bring the tenant's scheduled deployment in step with its stored schedule, when a Prefect server is
    configured (None: none is; `provision deploy` applies it later)."""
    from admin.runs import prefect_server_configured
    from deployments.reconcile import reconcile

    if not prefect_server_configured():
        return None
    try:
        return reconcile(engine, only_tenants=[tenant]).as_dict()
    except (httpx.HTTPError, OSError) as exc:  # the server is down or unreachable; the stored schedule stands
        from prefect.settings import PREFECT_API_URL

        raise UnavailableError(
            f"The schedule is saved, but the Prefect server at {PREFECT_API_URL.value()} could not be reached "
            f"({type(exc).__name__}); `provision deploy` applies it once the server is up."
        ) from None


def fresh_groups(engine: Engine, tenant: str) -> pl.DataFrame:
    """The flattened groups, fresh from the source (and stored for the filter)."""
    from pipeline import refresh_groups

    return refresh_groups(engine, integration_settings(engine, tenant, require_selection=False))


@dataclass(frozen=True)
class TenantSettings:
    group_ids: list[str]
    all_users: bool
    schedule: Schedule | None
    guard_max_share: float
    guard_min_count: int
    policy: Policy
    suppress_erased: bool = False  # data protection (store/suppressions.py): erasures also suppress the person
    retention_days: int = 90  # names and emails leave the run history after this many days

    def as_dict(self) -> dict[str, Any]:
        schedule = self.schedule
        return {
            "group_ids": self.group_ids,
            "all_users": self.all_users,
            "schedule": None if schedule is None else schedule.as_dict(),
            "guard": {"max_share": self.guard_max_share, "min_count": self.guard_min_count},
            "policy": self.policy.as_dict(),
            "suppress_erased": self.suppress_erased,
            "retention_days": self.retention_days,
        }


def tenant_settings(engine: Engine, tenant: str) -> TenantSettings:

    integration = integration_settings(engine, tenant, require_selection=False)
    privacy = privacy_settings(engine, tenant)
    return TenantSettings(
        group_ids=list(integration.selected_group_ids),
        all_users=integration.all_users,
        schedule=schedule_of(integration),
        guard_max_share=integration.guard_max_share,
        guard_min_count=integration.guard_min_count,
        policy=policy_of(integration),
        suppress_erased=privacy.suppress_erased,
        retention_days=privacy.retention_days,
    )


_UNCHANGED: Any = object()


def save_settings(
    engine: Engine,
    tenant: str,
    *,
    actor: str,
    group_ids: list[str] | None = None,
    all_users: bool | None = None,
    schedule: Schedule | None = _UNCHANGED,
    guard_max_share: float | None = None,
    guard_min_count: int | None = None,
    policy_mode: str | None = None,
    policy_grace_days: int | None = None,
    suppress_erased: bool | None = None,
    retention_days: int | None = None,
    wait: float | None = None,
) -> TenantSettings:
    """Store what is given (None / not given keeps it); audited old -> new.

    A new group selection is saved under the tenant's lock (`holding_tenant`), so a running sync keeps the
    selection it started with to its end: it waits up to `wait` seconds for the sync, else nothing is saved."""
    current = tenant_settings(engine, tenant)  # unknown or not connected: said without waiting for a sync
    check_privacy(suppress_erased=suppress_erased, retention_days=retention_days)  # before anything is written
    selecting = group_ids is not None or all_users is not None
    everyone = bool(all_users)
    wanted = ([] if everyone else list(dict.fromkeys(group_ids or [])), everyone)
    # The settings page sends the selection with every save: one that keeps it (a new schedule) need not wait.
    changing = selecting and wanted != (current.group_ids, current.all_users)
    held = holding_tenant(engine, tenant, doing="the group selection change", wait=wait) if changing else nullcontext()
    with held:
        before = tenant_settings(engine, tenant)
        if policy_mode is not None or policy_grace_days is not None:  # checked first: a refusal writes nothing
            set_policy(engine, tenant, mode=policy_mode, grace_days=policy_grace_days)
        if selecting:
            select_groups(engine, tenant, wanted[0], all_users=everyone)
        if schedule is not _UNCHANGED:
            set_schedule(engine, tenant, schedule)
        if guard_max_share is not None or guard_min_count is not None:
            set_guard(engine, tenant, max_share=guard_max_share, min_count=guard_min_count)
        if suppress_erased is not None or retention_days is not None:
            set_privacy(engine, tenant, suppress_erased=suppress_erased, retention_days=retention_days)
        after = tenant_settings(engine, tenant)
        if after != before:
            audit(
                engine, tenant=tenant, actor=actor, action="settings_changed", old=before.as_dict(), new=after.as_dict()
            )
    return after


# ---- syncs ------------------------------------------------------------------------------------------


def busy_run(engine: Engine, tenant: str) -> str | None:
    """The id of the tenant's run that is queued or really running (its lock held), else None."""
    run = pending_run(engine, tenant)
    if run is None:
        return None
    if run.outcome == "running" and not is_locked(engine, tenant):
        return None  # a run row its crashed worker never finished: nothing holds the tenant
    return run.id


def queue_sync(engine: Engine, tenant: str, *, dry_run: bool, override_guard: bool, actor: str) -> str:
    """A queued run row for a sync a door is about to start, or TenantBusy. Audited (override included)."""
    integration_settings(engine, tenant)  # connected, with a selection: the sentence before anything is queued
    running = busy_run(engine, tenant)
    if running is not None:
        raise TenantBusy(tenant, running)
    parameters = {"dry_run": dry_run, "override_guard": override_guard, "wait_for_lock": False}
    run_id = start_run(
        engine, tenant, trigger="api", parameters=parameters, flow_run_id=None, dry_run=dry_run, outcome="queued"
    )
    audit(
        engine,
        tenant=tenant,
        actor=actor,
        action="sync_started",
        new={"run": run_id, "dry_run": dry_run, "override_guard": override_guard},
    )
    return run_id


# ---- employees ---------------------------------------------------------------------------------------

DELETABLE = ("non_matching", "terminated", "unmanaged")


def create_employee(engine: Engine, tenant: str, *, email: str, first_name: str, last_name: str, actor: str) -> int:
    employee = add_employee(engine, tenant, email=email, first_name=first_name, last_name=last_name)
    audit(engine, tenant=tenant, actor=actor, action="employee_created", new={"employee": employee.id})
    return employee.id


def delete_employee(engine: Engine, tenant: str, employee_id: int, *, actor: str, wait: float | None = None) -> None:
    """Delete a flagged or unmanaged employee by hand; a `synced` one is refused (the source is the truth).

    Under the tenant's lock, as every change an admin makes to what a sync reads (`holding_tenant`): a sync that
    had read the employees would otherwise write to, and record, one deleted meanwhile."""
    with Session(engine) as session:
        get_tenant(session, tenant)  # an unknown tenant: said without waiting for a sync
    with holding_tenant(engine, tenant, doing="the deletion", wait=wait), Session(engine) as session, session.begin():
        status = session.scalar(select(Employee.status).where(Employee.tenant_id == tenant, Employee.id == employee_id))
        if status is None:
            raise StoreNotFound(f"Tenant {tenant!r} has no employee {employee_id}.")
        if status not in DELETABLE:
            raise StoreConflict(
                f"Employee {employee_id} is {status}: the source is the truth for it, so it is not deleted by hand."
            )
        delete_employee_rows(session.connection(), tenant, Employee.id == employee_id)
        record(
            session.connection(),
            tenant=tenant,
            actor=actor,
            action="employee_deleted",
            old={"employee": employee_id, "status": status},
        )


def deletable_employees(
    engine: Engine, tenant: str, *, status: str, flagged_for_seconds: int | None = None
) -> list[dict[str, Any]]:
    """The employees of one deletable status (non_matching, terminated, unmanaged), unchanged for at least
    `flagged_for_seconds` when given: what a manual delete by status would remove (id, email, since)."""
    if status not in DELETABLE:
        raise StoreConflict(
            f"Employees that are {status} are not deleted by hand (the source is the truth); "
            f"choose one of {', '.join(DELETABLE)}."
        )
    query = select(Employee.id, Employee.email, Employee.updated_at).where(
        Employee.tenant_id == tenant, Employee.status == status
    )
    if flagged_for_seconds is not None:
        query = query.where(Employee.updated_at <= utcnow() - timedelta(seconds=flagged_for_seconds))
    with Session(engine) as session:
        get_tenant(session, tenant)
        rows = session.execute(query.order_by(Employee.id))
        return [{"id": r.id, "email": r.email, "since": r.updated_at.isoformat()} for r in rows]


def delete_employees(
    engine: Engine, tenant: str, employee_ids: list[int], *, status: str, actor: str, wait: float | None = None
) -> int:
    """Delete these employees in one transaction under the tenant's lock (as `delete_employee`), each still of
    `status` (a sync in between may have changed one: it is left alone); one audit entry names them. Returns how
    many were deleted."""
    if status not in DELETABLE:
        raise StoreConflict(f"Employees that are {status} are not deleted by hand (the source is the truth).")
    with Session(engine) as session:
        get_tenant(session, tenant)  # an unknown tenant: said without waiting for a sync
    with holding_tenant(engine, tenant, doing="the deletion", wait=wait), Session(engine) as session, session.begin():
        gone = delete_employee_rows(
            session.connection(), tenant, Employee.id.in_(employee_ids), Employee.status == status
        )
        if gone:
            record(
                session.connection(),
                tenant=tenant,
                actor=actor,
                action="employees_deleted",
                old={"employees": sorted(gone), "status": status},
            )
        return len(gone)


def erase(
    engine: Engine,
    tenant: str,
    email: str | None = None,
    *,
    source_id: str | None = None,
    actor: str,
    wait: float | None = None,
) -> dict[str, Any]:
    """Erase one employee, found by email or by the source user id it is linked to (store/erase.py).

    Under the tenant's lock (`holding_tenant`): a sync that had read the employees before the erasure would
    write the person's names into its run changes after it. It waits up to `wait` seconds for a running sync,
    else nothing is erased."""
    check_one_person(email, source_id)
    with Session(engine) as session:
        get_tenant(session, tenant)  # an unknown tenant: said without waiting for a sync
    with holding_tenant(engine, tenant, doing="the erasure", wait=wait):
        erased = erase_employee(engine, tenant, email, source_user_id=source_id)
        audit(
            engine,
            tenant=tenant,
            actor=actor,
            action="employee_erased",
            old={"employee": erased.employee_id},
            new={"run_changes_scrubbed": erased.scrubbed_changes, "suppressed": erased.suppressed},
        )
    return {
        "employee_id": erased.employee_id,
        "run_changes_scrubbed": erased.scrubbed_changes,
        "suppressed": erased.suppressed,
    }


def integration_view(engine: Engine, tenant: str) -> dict[str, Any]:
    """The tenant's integration as an admin sees it: state, provider, connection, health, last run."""
    with Session(engine) as session:
        get_tenant(session, tenant)
        integration = session.get(Integration, tenant)
    from store.repo import list_runs

    runs = list_runs(engine, tenant, limit=1)
    last = runs[0] if runs else None
    if integration is None:
        return {"state": "not_connected", "provider": None, "connection_id": None, "health": None, "last_run": last}
    healthy = None if last is None else last["outcome"] in ("succeeded", "stopped_by_guard", "running", "queued")
    return {
        "state": integration.state,
        "provider": integration.provider,
        "connection_id": integration.connection_id if integration.state == "active" else None,
        "health": None if healthy is None else ("ok" if healthy else "failing"),
        "last_run": last,
        "updated_at": integration.updated_at.isoformat(),
    }


def tenant_overview(engine: Engine, tenant: str) -> dict[str, Any]:
    """One tenant's state in one place (`provision tenant show`): its integration (state, provider,
    connection, health), the selected groups with their names, the schedule, the guard's thresholds, the
    deprovisioning policy, the employees per status and the last run. Selection, guard and policy are None
    before the first connect."""
    view = integration_view(engine, tenant)  # the tenant checked, and the integration as the API shows it
    with Session(engine) as session:
        row = get_tenant(session, tenant)
        name, created_at = row.name, row.created_at.isoformat()
        integration = session.get(Integration, tenant)
        selection = guard = policy = None
        base_url = None
        if integration is not None:
            selected = list(integration.selected_group_ids)
            names = dict(
                session.execute(
                    select(SourceGroup.group_id, SourceGroup.name).where(
                        SourceGroup.tenant_id == tenant, SourceGroup.group_id.in_(selected)
                    )
                ).all()
            )
            selection = {
                "all_users": integration.all_users,
                "groups": [{"group_id": group_id, "name": names.get(group_id)} for group_id in selected],
            }
            guard = {"max_share": integration.guard_max_share, "min_count": integration.guard_min_count}
            policy = policy_of(integration).as_dict()
            base_url = integration.base_url if integration.state == "active" else None
        schedule = stored.as_dict() if (stored := schedule_of(integration)) else None
    return {
        "tenant": tenant,
        "name": name,
        "created_at": created_at,
        "integration": {
            "state": view["state"],
            "provider": view["provider"],
            "connection_id": view["connection_id"],
            "base_url": base_url,
            "health": view["health"],
        },
        "selection": selection,
        "schedule": schedule,
        "guard": guard,
        "policy": policy,
        "employees": status_totals(engine, tenant),
        "last_run": view["last_run"],
    }
