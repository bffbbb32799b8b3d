"""What the CLI and the flow read and write outside the load: tenants, integrations, runs, listings."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, CursorResult, Engine, and_, delete, func, insert, literal, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.emails import email_problem, is_valid_email, normalize_email
from domain.errors import ConflictError, ExplainedError, NotFoundError
from domain.names import person_name
from domain.policy import Policy
from domain.schedules import Schedule
from store.models import Employee, EmployeeGroup, Integration, Run, RunChange, SourceGroup, Tenant, utcnow

if TYPE_CHECKING:  # polars only where frames come in (store/frames.py reads them out): `provision runs` needs none
    import polars as pl


class StoreError(ExplainedError):
    """A request the store cannot honour; the message is one sentence for the person who asked."""


class StoreNotFound(StoreError, NotFoundError):
    """An unknown tenant, run or employee."""


class StoreConflict(StoreError, ConflictError):
    """A request at odds with what is stored: exists already, not connected, connected elsewhere."""


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise StoreNotFound(f"Unknown tenant {tenant_id!r}; create it with `provision tenant add {tenant_id}`.")
    return tenant


# Tenant ids are slugs: they name Prefect deployments and artifact keys, which allow no other characters,
# so two tenants can never share a key.
TENANT_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def add_tenant(engine: Engine, tenant_id: str, name: str | None = None) -> Tenant:
    if not TENANT_ID.fullmatch(tenant_id):
        raise StoreError(
            f"Tenant id {tenant_id!r} is not a slug: use lowercase letters, digits and inner dashes (at most 63)."
        )
    with Session(engine, expire_on_commit=False) as session, session.begin():
        if session.get(Tenant, tenant_id) is not None:
            raise StoreConflict(f"Tenant {tenant_id!r} already exists.")
        tenant = Tenant(id=tenant_id, name=name or tenant_id)
        session.add(tenant)
    return tenant


def list_tenants(engine: Engine) -> list[dict[str, Any]]:
    """Every tenant by id, with its integration's state, provider and schedule and its newest run: two
    queries, however many tenants there are."""
    with Session(engine) as session:
        tenants = session.execute(
            select(Tenant, Integration).outerjoin(Integration, Integration.tenant_id == Tenant.id).order_by(Tenant.id)
        ).all()
        newest = select(Run.tenant_id, func.max(Run.started_at).label("started_at")).group_by(Run.tenant_id).subquery()
        last_runs = {
            run.tenant_id: _run_dict(run)
            for run in session.scalars(
                select(Run).join(
                    newest, (Run.tenant_id == newest.c.tenant_id) & (Run.started_at == newest.c.started_at)
                )
            )
        }
        return [
            {
                "tenant": tenant.id,
                "name": tenant.name,
                "integration": "not_connected" if integration is None else integration.state,
                "provider": None if integration is None else integration.provider,
                "schedule": schedule.as_dict() if (schedule := schedule_of(integration)) else None,
                "last_run": last_runs.get(tenant.id),
            }
            for tenant, integration in tenants
        ]


def schedule_of(integration: Integration | None) -> Schedule | None:
    """The integration's stored schedule (None: no automatic sync, or no integration)."""
    if integration is None or (integration.schedule_cron is None and integration.schedule_interval_seconds is None):
        return None
    return Schedule(
        cron=integration.schedule_cron,
        interval_seconds=integration.schedule_interval_seconds,
        timezone=integration.schedule_timezone,
    )


def active_integration(session: Session, tenant_id: str) -> Integration:
    get_tenant(session, tenant_id)
    integration = session.get(Integration, tenant_id)
    if integration is None or integration.state != "active":
        raise StoreConflict(
            f"Tenant {tenant_id!r} has no active integration; connect one with `provision connect {tenant_id}`."
        )
    return integration


def connect(
    engine: Engine,
    tenant_id: str,
    *,
    provider: str,
    connection_id: str,
    base_url: str,
    source: str = "unified",
    groups: pl.DataFrame | None = None,
) -> tuple[Integration, str | None]:
    """Save the tenant's one integration, with the flat group list read while checking it (when given).

    A new connection keeps the group selection only when every selected group is in the new source's list;
    otherwise it starts with none (and "All users" is chosen again too). The sentence saying so comes back
    with the integration (None when nothing was cleared)."""
    cleared: str | None = None
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            get_tenant(session, tenant_id)
            taken = session.scalar(
                select(Integration.tenant_id).where(
                    Integration.connection_id == connection_id,
                    Integration.state == "active",
                    Integration.tenant_id != tenant_id,
                )
            )
            if taken is not None:  # a connection belongs to one tenant (and the other's name is not ours to tell)
                raise StoreConflict(f"Connection {connection_id!r} is already connected to another tenant.")
            integration = session.get(Integration, tenant_id)
            if integration is None:
                integration = Integration(tenant_id=tenant_id, selected_group_ids=[], all_users=False)
                session.add(integration)
            elif integration.state == "active" and integration.connection_id != connection_id:
                raise StoreConflict(
                    f"Tenant {tenant_id!r} is already connected to {integration.connection_id!r}; disconnect it first."
                )
            elif integration.state == "active" and integration.provider != provider:
                raise StoreConflict(
                    f"Tenant {tenant_id!r} is connected to {integration.provider} through {connection_id!r}, "
                    f"not {provider}; disconnect it first to connect {provider}."
                )
            elif integration.connection_id != connection_id:  # another source than the one selected in
                cleared = _selection_for_new_source(integration, groups)
            integration.source = source
            integration.provider = provider
            integration.connection_id = connection_id
            integration.base_url = base_url
            integration.state = "active"
            integration.updated_at = utcnow()
            if groups is not None:
                _replace_groups(session.connection(), tenant_id, groups)
    except IntegrityError as exc:
        if "uq_integrations_active_connection" not in str(exc.orig) and "connection_id" not in str(exc.orig):
            raise
        # the unique index: another tenant connected it in the meantime
        raise StoreConflict(f"Connection {connection_id!r} is already connected to another tenant.") from None
    return integration, cleared


def _selection_for_new_source(integration: Integration, groups: pl.DataFrame | None) -> str | None:
    """Keep a selection whose groups are all in the new source; else clear it. The sentence if cleared."""
    selected = list(integration.selected_group_ids or [])
    if not selected and not integration.all_users:
        return None  # nothing chosen: nothing to clear
    known = set(groups["group_id"].to_list()) if groups is not None else set()
    if selected and not integration.all_users and set(selected) <= known:
        return None
    integration.selected_group_ids = []
    integration.all_users = False
    return (
        "The group selection of the previous connection was cleared: choose the groups to sync "
        "(or all users) before the next sync."
    )


def disconnect(engine: Engine, tenant_id: str) -> int:
    """End the integration: employees stay, become `unmanaged` and lose their link. Returns how many."""
    with Session(engine) as session, session.begin():
        integration = active_integration(session, tenant_id)
        integration.state = "disconnected"
        integration.schedule_cron = None
        integration.schedule_interval_seconds = None
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Employee)
            .where(Employee.tenant_id == tenant_id)
            .values(status="unmanaged", source_user_id=None, updated_at=utcnow())
        )
        return int(result.rowcount or 0)


def select_groups(engine: Engine, tenant_id: str, group_ids: Sequence[str], *, all_users: bool) -> None:
    with Session(engine) as session, session.begin():
        integration = active_integration(session, tenant_id)
        if not all_users:
            if not group_ids:
                raise StoreError("Select at least one group with --group, or all users with --all-users.")
            known = set(session.scalars(select(SourceGroup.group_id).where(SourceGroup.tenant_id == tenant_id)))
            unknown = sorted(set(group_ids) - known)
            if unknown:
                raise StoreError(
                    f"Unknown group id(s) {', '.join(unknown)} for tenant {tenant_id!r}; "
                    f"`provision groups {tenant_id}` lists them."
                )
        integration.selected_group_ids = [] if all_users else list(dict.fromkeys(group_ids))
        integration.all_users = all_users
        integration.updated_at = utcnow()


@dataclass(frozen=True)
class GuardSettings:
    """The tenant's mass-change guard: a run stops when it would flag more than `max_share` of the
    employees and at least `min_count` of them (design.md, Safety)."""

    max_share: float
    min_count: int


def guard_settings(engine: Engine, tenant_id: str) -> GuardSettings:
    with Session(engine) as session:
        integration = active_integration(session, tenant_id)
        return GuardSettings(max_share=integration.guard_max_share, min_count=integration.guard_min_count)


def set_guard(engine: Engine, tenant_id: str, *, max_share: float | None, min_count: int | None) -> GuardSettings:
    """Change either threshold (None keeps it); both are checked before anything is written."""
    if max_share is not None and not (math.isfinite(max_share) and 0 < max_share <= 1):
        raise StoreError(f"The guard's share must be above 0 and at most 1 (0.1 = 10%), not {max_share}.")
    if min_count is not None and min_count < 1:
        raise StoreError(f"The guard's minimum count must be at least 1, not {min_count}.")
    with Session(engine) as session, session.begin():
        integration = active_integration(session, tenant_id)
        if max_share is not None:
            integration.guard_max_share = max_share
        if min_count is not None:
            integration.guard_min_count = min_count
        integration.updated_at = utcnow()
        return GuardSettings(max_share=integration.guard_max_share, min_count=integration.guard_min_count)


def policy_of(integration: Integration) -> Policy:
    return Policy(mode=integration.deprovision_mode, grace_days=integration.deprovision_grace_days)


def set_policy(engine: Engine, tenant_id: str, *, mode: str | None, grace_days: int | None) -> Policy:
    """Change the deprovisioning mode or grace period (None keeps it); checked before anything is written."""
    with Session(engine) as session, session.begin():
        integration = active_integration(session, tenant_id)
        current = policy_of(integration)
        wanted = Policy(
            mode=current.mode if mode is None else mode,
            grace_days=current.grace_days if grace_days is None else grace_days,
        )
        integration.deprovision_mode, integration.deprovision_grace_days = wanted.mode, wanted.grace_days
        integration.updated_at = utcnow()
        return wanted


def add_employee(engine: Engine, tenant_id: str, *, email: str, first_name: str, last_name: str) -> Employee:
    """An employee created by hand: unlinked, so the next sync matches it by email."""
    email = email.strip()
    if not is_valid_email(email):  # the same syntax rule as for source users' emails
        raise StoreError(f"{email!r} is not an email address.")
    if (problem := email_problem(email)) is not None:  # a look-alike a sync would quarantine (domain/emails.py)
        raise StoreError(f"The email is not accepted: {problem}.")
    # The same name rules as for source users (domain/names.py): what a sync would quarantine is refused here.
    first_name, last_name = person_name(first_name, "first name"), person_name(last_name, "last name")
    display_name = person_name(f"{first_name} {last_name}", "full name (first and last name together)")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        get_tenant(session, tenant_id)
        norm = normalize_email(email)
        clash = session.scalar(select(Employee.id).where(Employee.tenant_id == tenant_id, Employee.email_norm == norm))
        if clash is not None:
            raise StoreConflict(f"Tenant {tenant_id!r} already has an employee with that email.")
        employee = Employee(
            tenant_id=tenant_id,
            email=email,
            email_norm=norm,
            first_name=first_name,
            last_name=last_name,
            display_name=display_name,
            status="unmanaged",
        )
        session.add(employee)
    return employee


def list_employees(
    engine: Engine, tenant_id: str, status: str | None = None, group: str | None = None
) -> list[dict[str, Any]]:
    with Session(engine) as session:
        get_tenant(session, tenant_id)
        query = select(Employee).where(Employee.tenant_id == tenant_id)
        if status:
            query = query.where(Employee.status == status)
        if group:
            query = query.where(_in_group(tenant_id, group))
        employees = list(session.scalars(query.order_by(Employee.email_norm)))
        return _shown(session, tenant_id, employees)


def _shown(session: Session, tenant_id: str, employees: list[Employee]) -> list[dict[str, Any]]:
    """Employees as the doors show them: names, status, link, and why a flagged one was flagged."""
    reasons = flag_reasons(session, tenant_id, [e.id for e in employees if e.status in FLAG_REASONS])
    return [
        {
            "email": e.email,
            "first_name": e.first_name,
            "last_name": e.last_name,
            "display_name": e.display_name,
            "status": e.status,
            "link": e.source_user_id,
            "reason": reasons.get(e.id) or FLAG_REASONS.get(e.status),
            "flagged_at": e.flagged_at.isoformat() if e.flagged_at else None,
            "deactivated": e.deactivated_at is not None,
            "leave_date": e.leave_date,  # the source's end date: ahead of today, the planned leave date
        }
        for e in employees
    ]


def status_totals(engine: Engine, tenant_id: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Employee.status, func.count()).where(Employee.tenant_id == tenant_id).group_by(Employee.status)
        ).all()
    return {status: int(n) for status, n in rows}


def replace_groups(engine: Engine, tenant_id: str, groups: pl.DataFrame) -> None:
    """Store the flattened group list the source returned (the filter screen's list).

    Most reads find it as stored: then only `refreshed_at` moves, rather than every row being deleted
    and inserted again on each run (on Postgres, thousands of dead rows per sync for autovacuum).
    """
    with engine.begin() as conn:
        _replace_groups(conn, tenant_id, groups)


_GROUP_COLUMNS = (
    SourceGroup.group_id,
    SourceGroup.name,
    SourceGroup.type,
    SourceGroup.parent_id,
    SourceGroup.member_count,
)


def stored_groups(engine: Engine, tenant_id: str) -> list[dict[str, Any]]:
    """The group list as the last read of the source left it (connect, a sync, a refresh), by name, each with
    when it was read: what a page shows without reading the whole source again."""
    columns = _GROUP_COLUMNS
    with Session(engine) as session:
        get_tenant(session, tenant_id)
        rows = session.execute(
            select(*columns, SourceGroup.refreshed_at)
            .where(SourceGroup.tenant_id == tenant_id)
            .order_by(SourceGroup.name, SourceGroup.group_id)
        )
        return [dict(row._mapping) for row in rows]


def selected_groups(engine: Engine, tenant_id: str) -> list[dict[str, Any]]:
    """The groups the tenant syncs (every listed group when it syncs all users), by name, each with how many of
    its employees it holds (group sync, as the last run left it). A selected group the source no longer lists
    is shown by its id, without a name."""
    held = (
        select(EmployeeGroup.group_id, func.count().label("employees"))
        .where(EmployeeGroup.tenant_id == tenant_id)
        .group_by(EmployeeGroup.group_id)
        .subquery()
    )
    with Session(engine) as session:
        integration = active_integration(session, tenant_id)
        query = (
            select(
                SourceGroup.group_id,
                SourceGroup.name,
                SourceGroup.type,
                SourceGroup.parent_id,
                SourceGroup.member_count,
                SourceGroup.refreshed_at,
                func.coalesce(held.c.employees, 0).label("employees"),
            )
            .outerjoin(held, held.c.group_id == SourceGroup.group_id)
            .where(SourceGroup.tenant_id == tenant_id)
            .order_by(SourceGroup.name, SourceGroup.group_id)
        )
        wanted = list(integration.selected_group_ids)
        if not integration.all_users:
            query = query.where(SourceGroup.group_id.in_(wanted))
        rows = [dict(row._mapping) for row in session.execute(query)]
        listed = {row["group_id"] for row in rows}
        gone = {"name": None, "type": None, "parent_id": None, "member_count": 0, "refreshed_at": None, "employees": 0}
        return rows + [{"group_id": g, **gone} for g in wanted if g not in listed and not integration.all_users]


def delete_employee_rows(conn: Connection, tenant_id: str, *conditions: Any) -> list[int]:
    """Delete the tenant's employees that meet `conditions`, with their group memberships (employee_groups has no
    foreign key to cascade them: store/models.py). Returns the ids deleted."""
    ids = list(
        conn.execute(
            delete(Employee).where(Employee.tenant_id == tenant_id, *conditions).returning(Employee.id)
        ).scalars()
    )
    if ids:
        conn.execute(
            delete(EmployeeGroup).where(EmployeeGroup.tenant_id == tenant_id, EmployeeGroup.employee_id.in_(ids))
        )
    return ids


def _in_group(tenant_id: str, group_id: str) -> Any:
    """Employees holding a membership of `group_id` (group sync)."""
    members = select(EmployeeGroup.employee_id).where(
        EmployeeGroup.tenant_id == tenant_id, EmployeeGroup.group_id == group_id
    )
    return Employee.id.in_(members)


def _replace_groups(conn: Connection, tenant_id: str, groups: pl.DataFrame) -> None:
    now = utcnow()
    columns = _GROUP_COLUMNS
    if "type" not in groups.columns:  # a list made by hand (tests, tools) may name no types
        import polars as pl

        groups = groups.with_columns(type=pl.lit(None, dtype=pl.String()))
    listed = groups.select(column.key for column in columns)
    stored = {tuple(row) for row in conn.execute(select(*columns).where(SourceGroup.tenant_id == tenant_id))}
    if stored == set(listed.iter_rows()) and len(stored) == listed.height:
        conn.execute(update(SourceGroup).where(SourceGroup.tenant_id == tenant_id).values(refreshed_at=now))
        return
    conn.execute(delete(SourceGroup).where(SourceGroup.tenant_id == tenant_id))
    if listed.height:
        rows = [{**row, "tenant_id": tenant_id, "refreshed_at": now} for row in listed.iter_rows(named=True)]
        conn.execute(insert(SourceGroup), rows)


def start_run(
    engine: Engine,
    tenant_id: str,
    *,
    trigger: str,
    parameters: dict[str, Any],
    flow_run_id: str | None,
    dry_run: bool,
    outcome: str = "running",
) -> str:
    """A new run row (`queued` when a door created it before the flow run exists). Returns its id."""
    run_id = str(uuid.uuid4())
    with Session(engine) as session, session.begin():
        get_tenant(session, tenant_id)
        session.add(
            Run(
                id=run_id,
                tenant_id=tenant_id,
                trigger=trigger,
                parameters=parameters,
                flow_run_id=flow_run_id,
                dry_run=dry_run,
                outcome=outcome,
                counts={},
            )
        )
    return run_id


def adopt_run(engine: Engine, tenant_id: str, run_id: str, *, flow_run_id: str | None) -> None:
    """The flow run takes over the queued run row a door created for it; the row stays `queued` until the
    run holds the tenant's lock (`begin_run`). A row abandoned because no flow run had picked it up in time
    is taken back: its flow run has come after all."""
    waiting = or_(Run.outcome == "queued", and_(Run.outcome == "abandoned", Run.flow_run_id.is_(None)))
    with engine.begin() as conn:
        result: CursorResult[Any] = conn.execute(
            update(Run)
            .where(Run.id == run_id, Run.tenant_id == tenant_id, waiting)
            .where(or_(Run.flow_run_id.is_(None), Run.flow_run_id == flow_run_id))
            .values(outcome="queued", flow_run_id=flow_run_id, started_at=utcnow(), ended_at=None, error=None)
        )
    if not result.rowcount:
        raise StoreConflict(f"Run {run_id!r} of tenant {tenant_id!r} is not waiting to start.")


def begin_run(engine: Engine, run_id: str) -> None:
    """The run holds the tenant's lock now: its row says `running` (and only such a run's row does)."""
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(outcome="running", ended_at=None, error=None))


# A queued run whose flow run has not started within this time is taken as lost (a worker never picked it).
QUEUED_SECONDS = 600


def pending_run(engine: Engine, tenant_id: str) -> Run | None:
    """The tenant's newest run that is queued (recently) or running, else None."""
    since = utcnow() - timedelta(seconds=QUEUED_SECONDS)
    with Session(engine, expire_on_commit=False) as session:
        run = session.scalars(
            select(Run)
            .where(Run.tenant_id == tenant_id, Run.outcome.in_(["queued", "running"]))
            .order_by(Run.started_at.desc())
            .limit(1)
        ).first()
        if run is None:
            return None
        started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=UTC)
        if run.outcome == "queued" and started < since:
            return None
        session.expunge(run)
        return run


def abandon_stale_runs(engine: Engine, tenant_id: str) -> int:
    """Mark the tenant's runs that cannot be alive `abandoned`, with the time they were found; the number marked.

    Called by whoever has just taken the tenant's lock (store/locks.py). A run row is `running` only while
    its run holds that lock, so every other `running` row is a run whose worker died (a crash, a killed
    process, a lost lock) without recording its end. A `queued` row is left alone while a flow run owns it
    (it may be waiting for the lock, for as long as it was told to wait); one that no flow run picked up
    within QUEUED_SECONDS is abandoned too (`adopt_run` takes it back if its flow run comes after all).
    """
    found = utcnow()
    at = found.strftime("%Y-%m-%d %H:%M:%S UTC")
    died = (
        f"Abandoned: found still running when the tenant's lock was next taken at {at}; its worker stopped "
        "without recording an end (a crash, a killed process or a lost lock)"
    )
    committed = select(RunChange.run_id).where(RunChange.run_id == Run.id).exists()
    running = (Run.tenant_id == tenant_id, Run.outcome == "running")
    never_started = (
        Run.tenant_id == tenant_id,
        Run.outcome == "queued",
        Run.flow_run_id.is_(None),
        Run.started_at < found - timedelta(seconds=QUEUED_SECONDS),
    )
    changes = [
        ((*running, ~committed), literal(f"{died}, and its load never committed: nothing was written.")),
        (
            (*running, committed),
            literal(f"{died}; its load had committed (`provision run show ")
            + Run.id
            + literal("` lists its changes), its counts were not recorded."),
        ),
        (
            never_started,
            literal(
                f"Abandoned: no flow run picked it up within {QUEUED_SECONDS // 60} minutes (found when the "
                f"tenant's lock was next taken at {at}); nothing was written."
            ),
        ),
    ]
    marked = 0
    with engine.begin() as conn:
        for where, error in changes:
            result: CursorResult[Any] = conn.execute(
                update(Run).where(*where).values(outcome="abandoned", ended_at=found, error=error)
            )
            marked += result.rowcount or 0
    return marked


def finish_run(
    engine: Engine,
    run_id: str,
    *,
    outcome: str,
    counts: dict[str, int] | None = None,
    failed_stage: str | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {
        "outcome": outcome,
        "ended_at": utcnow(),
        "failed_stage": failed_stage,
        "error": error,
    }
    if counts is not None:
        values["counts"] = counts
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(**values))


def load_committed(engine: Engine, run_id: str) -> bool:
    """Whether the run's load committed: its changes are written in the load's own transaction."""
    with engine.connect() as conn:
        return conn.execute(select(RunChange.run_id).where(RunChange.run_id == run_id).limit(1)).first() is not None


def list_runs(engine: Engine, tenant_id: str, limit: int = 50) -> list[dict[str, Any]]:
    with Session(engine) as session:
        get_tenant(session, tenant_id)
        runs = session.scalars(
            select(Run).where(Run.tenant_id == tenant_id).order_by(Run.started_at.desc()).limit(limit)
        )
        return [_run_dict(r) for r in runs]


def _run_dict(run: Run) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "run_id": run.id,
        "flow_run_id": run.flow_run_id,
        "trigger": run.trigger,
        "dry_run": run.dry_run,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "outcome": run.outcome,
        "failed_stage": run.failed_stage,
        "error": run.error,
        "counts": run.counts,
    }


def run_changes(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        if session.get(Run, run_id) is None:  # an unknown id is a mistake, not a run without changes
            raise StoreNotFound(f"Unknown run {run_id!r}; `provision runs TENANT` lists a tenant's runs.")
        changes = session.scalars(select(RunChange).where(RunChange.run_id == run_id).order_by(RunChange.seq))
        return [
            {c.name: getattr(change, c.name) for c in RunChange.__table__.columns if c.name != "seq"}
            for change in changes
        ]


def integration_settings(engine: Engine, tenant_id: str, *, require_selection: bool = True) -> Integration:
    """The tenant's active integration, detached from its session, for a run to read."""
    with Session(engine, expire_on_commit=False) as session:
        integration = active_integration(session, tenant_id)
        if require_selection and not integration.all_users and not integration.selected_group_ids:
            raise StoreConflict(
                f"Tenant {tenant_id!r} has no groups selected; choose them with "
                f"`provision filter {tenant_id} --group ID` or `--all-users`."
            )
        session.expunge(integration)
        return integration


# ---- pages for the admin API ------------------------------------------------------------------------

# Why an employee is flagged, as far as its status tells (design.md, statuses).
FLAG_REASONS = {
    "non_matching": "no source user matches it (gone from the source, outside the selected groups, or never matched)",
    "terminated": "disabled or terminated in the source",
}


def employee_page(
    engine: Engine,
    tenant_id: str,
    *,
    status: str | None,
    search: str | None,
    offset: int,
    limit: int,
    deactivated: bool | None = None,
    group: str | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of them) of the tenant's employees, by email; `search` in name or email;
    `deactivated` true or false keeps those inactive or active for the platform; `group` those in that group."""
    with Session(engine) as session:
        get_tenant(session, tenant_id)
        where = [Employee.tenant_id == tenant_id]
        if status:
            where.append(Employee.status == status)
        if group:
            where.append(_in_group(tenant_id, group))
        if deactivated is not None:
            where.append(Employee.deactivated_at.is_not(None) if deactivated else Employee.deactivated_at.is_(None))
        if search:
            needle = "%" + search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(
                func.lower(func.coalesce(Employee.email, "")).like(needle, escape="\\")
                | func.lower(func.coalesce(Employee.display_name, "")).like(needle, escape="\\")
                | func.lower(func.coalesce(Employee.first_name, "") + " " + func.coalesce(Employee.last_name, "")).like(
                    needle, escape="\\"
                )
            )
        total = int(session.scalar(select(func.count()).select_from(Employee).where(*where)) or 0)
        rows = session.scalars(
            select(Employee).where(*where).order_by(Employee.email_norm, Employee.id).offset(offset).limit(limit)
        )
        page = list(rows)
        return total, [
            {"id": e.id, **shown, "updated_at": e.updated_at.isoformat() if e.updated_at else None}
            for e, shown in zip(page, _shown(session, tenant_id, page), strict=True)
        ]


def flag_reasons(session: Session, tenant_id: str, employee_ids: list[int]) -> dict[int, str]:
    """Why each of these flagged employees was flagged: the reason of its newest flag record (the run that
    flagged it said why; employees flagged before reasons were recorded have none, and get the general one)."""
    if not employee_ids:
        return {}
    rows = session.execute(
        select(RunChange.employee_id, RunChange.reason)
        .join(Run, Run.id == RunChange.run_id)
        .where(
            RunChange.tenant_id == tenant_id,
            RunChange.employee_id.in_(employee_ids),
            # written out, as the partial index ix_run_changes_flags states it, so the planner can use it
            text("run_changes.action IN ('non_matching', 'terminated')"),
        )
        .order_by(Run.started_at, RunChange.seq)  # the newest flag last
    )
    found: dict[int, str] = {}
    for employee_id, reason in rows:
        if reason and employee_id is not None:
            found[employee_id] = reason
    return found


def tenant_run(engine: Engine, tenant_id: str, run_id: str) -> dict[str, Any]:
    """One run of the tenant; an unknown id, or another tenant's, is not found alike."""
    with Session(engine) as session:
        get_tenant(session, tenant_id)
        run = session.get(Run, run_id)
        if run is None or run.tenant_id != tenant_id:
            raise StoreNotFound(f"Tenant {tenant_id!r} has no run {run_id!r}.")
        return _run_dict(run)


def run_change_page(
    engine: Engine, tenant_id: str, run_id: str, *, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    tenant_run(engine, tenant_id, run_id)
    with Session(engine) as session:
        where = (RunChange.run_id == run_id, RunChange.tenant_id == tenant_id)
        total = int(session.scalar(select(func.count()).select_from(RunChange).where(*where)) or 0)
        rows = session.execute(
            select(RunChange, Employee.email)
            .outerjoin(Employee, (Employee.id == RunChange.employee_id) & (Employee.tenant_id == tenant_id))
            .where(*where)
            .order_by(RunChange.seq)
            .offset(offset)
            .limit(limit)
        )
        columns = [c.name for c in RunChange.__table__.columns if c.name not in ("seq", "tenant_id")]
        return total, [
            {**{name: getattr(change, name) for name in columns}, "employee_email": email}  # email: who it is now
            for change, email in rows
        ]
