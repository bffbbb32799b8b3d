"""The employee store: tenants, their integration, employees, source groups, runs and run changes.

Every table that holds a tenant's data carries `tenant_id`, and every query of the sync filters on it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so that migrations read the same on SQLite and Postgres.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp with time zone that reads back aware on SQLite too, which keeps no offset: every time the
    store hands out is UTC with its offset, whichever database holds it."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Data protection (store/suppressions.py, store/retention.py): whether an erasure also suppresses the person
    # in later syncs, and after how many days the run history loses names and emails.
    suppress_erased: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    retention_days: Mapped[int] = mapped_column(Integer, default=90, server_default="90")


class Integration(Base):
    """A tenant's one connection to one source. Holds no secret: the token lives in its own store."""

    __tablename__ = "integrations"
    __table_args__ = (
        # A connection belongs to one tenant: at most one active integration per connection id.
        Index(
            "uq_integrations_active_connection",
            "connection_id",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    source: Mapped[str] = mapped_column(String(40), default="unified")
    provider: Mapped[str] = mapped_column(String(40))
    connection_id: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str] = mapped_column(String(500))
    selected_group_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    all_users: Mapped[bool] = mapped_column(Boolean, default=False)
    schedule_cron: Mapped[str | None] = mapped_column(String(100), default=None)
    schedule_interval_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    schedule_timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    # Mass-change guard: stop when more than this share AND at least this many synced employees
    # would be flagged in one run.
    guard_max_share: Mapped[float] = mapped_column(Float, default=0.10)
    guard_min_count: Mapped[int] = mapped_column(Integer, default=10)
    # Deprovisioning policy (design.md, "Lifecycle after matching"): what a run does to the employees it
    # flags. flag: only the status; deactivate: also inactive for the platform; delete: deactivate, then
    # remove once flagged for `deprovision_grace_days`.
    deprovision_mode: Mapped[str] = mapped_column(String(20), default="flag", server_default="flag")
    deprovision_grace_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    state: Mapped[str] = mapped_column(String(20), default="active")  # active | disconnected
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class Employee(Base):
    __tablename__ = "employees"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email_norm", name="uq_employees_tenant_email"),
        # NULL links are distinct on both dialects, so unlinked employees never collide.
        UniqueConstraint("tenant_id", "source_user_id", name="uq_employees_tenant_link"),
        Index("ix_employees_tenant_status", "tenant_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    email: Mapped[str] = mapped_column(String(320))
    email_norm: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(400))
    employment_status: Mapped[str | None] = mapped_column(String(20))  # active | inactive, from the source
    source_user_id: Mapped[str | None] = mapped_column(String(200))  # the link
    status: Mapped[str] = mapped_column(String(20), default="unmanaged")
    # When a run first flagged it (non_matching or terminated); cleared when it is synced again.
    flagged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # When the deprovisioning policy made it inactive for the platform; cleared when it is synced again.
    deactivated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The end date the source gives (`terminated_at`, e.g. Personio's), as YYYY-MM-DD (UTC): ahead of today it is
    # the planned leave date and changes nothing yet; once reached the person is inactive for matching.
    leave_date: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class EmployeeGroup(Base):
    """Group sync: an employee's membership of a selected group (of any group when the tenant syncs all
    users), directly or through a child group, as the last run found it. Names stay in `source_groups`."""

    __tablename__ = "employee_groups"
    # One index, the key, in the order the questions come: a tenant's memberships, a group's members, one pair.
    # No foreign key to employees (as run_changes has none): its check per row, and a second index, made the
    # first sync's COPY of 300k memberships twice as slow (bench/README.md); whoever deletes an employee deletes
    # its memberships in the same transaction (store/load.py, admin/operations.py, store/erase.py).

    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    employee_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class SourceGroup(Base):
    """The flattened group list of a tenant's source, refreshed by every read of it (for the filter)."""

    __tablename__ = "source_groups"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(400))
    parent_id: Mapped[str | None] = mapped_column(String(200))
    type: Mapped[str | None] = mapped_column(String(40))  # DEPARTMENT, TEAM, BRANCH, GROUP, ... as the source says
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    refreshed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_tenant_started", "tenant_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    trigger: Mapped[str] = mapped_column(String(20))  # cli | manual | schedule | backfill
    parameters: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # queued | running | succeeded | failed | stopped_by_guard | refused | skipped_late | abandoned (domain/words.py)
    outcome: Mapped[str] = mapped_column(String(20), default="running")
    failed_stage: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    # When retention scrubbed the names and emails of this run's changes (store/retention.py); null: not yet.
    scrubbed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class RunChange(Base):
    """One outcome record of a run: an employee's action and the fields it changed, old and new.

    Conflicts and quarantined source users are recorded too (by source id and reason, no other data).
    """

    __tablename__ = "run_changes"
    # Only the flag records (a partial index: the load's COPY of a run's other outcomes pays nothing for it):
    # an employee's reason for being flagged is the newest of its flag records.
    __table_args__ = (
        Index(
            "ix_run_changes_flags",
            "tenant_id",
            "employee_id",
            sqlite_where=text("action IN ('non_matching', 'terminated')"),
            postgresql_where=text("action IN ('non_matching', 'terminated')"),
        ),
    )

    # Keyed by run and position within the run: the load numbers its rows itself, so a bulk COPY of
    # 100k outcomes needs no sequence call per row, and a run's changes are one index range. No
    # foreign key to runs: its check per row was 40% of the audit COPY, and only the load writes
    # here, with the id of the run row it was started for (runs are never deleted).
    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tenant_id: Mapped[str] = mapped_column(String(100))
    employee_id: Mapped[int | None] = mapped_column(Integer)
    source_user_id: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))
    group_id: Mapped[str | None] = mapped_column(String(200))  # the group an employee joined or left
    reason: Mapped[str | None] = mapped_column(Text)
    changed_fields: Mapped[str | None] = mapped_column(String(200))  # comma-separated
    old_email: Mapped[str | None] = mapped_column(String(320))
    new_email: Mapped[str | None] = mapped_column(String(320))
    old_first_name: Mapped[str | None] = mapped_column(String(200))
    new_first_name: Mapped[str | None] = mapped_column(String(200))
    old_last_name: Mapped[str | None] = mapped_column(String(200))
    new_last_name: Mapped[str | None] = mapped_column(String(200))
    old_display_name: Mapped[str | None] = mapped_column(String(400))
    new_display_name: Mapped[str | None] = mapped_column(String(400))
    old_status: Mapped[str | None] = mapped_column(String(20))
    new_status: Mapped[str | None] = mapped_column(String(20))


class TenantLock(Base):
    """The one-run-per-tenant lock on databases without advisory locks (SQLite): see store/locks.py."""

    __tablename__ = "tenant_locks"

    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ApiKey(Base):
    """A key of the admin API: scoped to one tenant, or to all (`tenant_id` null: the platform's backend).

    Only a hash of the key is stored (SHA-256 of a 256-bit random secret: no salt or slow hash is needed
    for a secret nobody chose); the key itself is shown once, when it is created.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # set on a page session's key only


class AuditEntry(Base):
    """One change an admin made (connect, settings, sync, delete, erase, disconnect, key issued/revoked):
    who (the key's name, or `cli`), when, and old -> new. Never a key, a token or an email."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    old: Mapped[dict[str, object] | None] = mapped_column(JSON)
    new: Mapped[dict[str, object] | None] = mapped_column(JSON)


class ConnectState(Base):
    """A signed `state` handed to Unified.to's authorization flow: accepted once, before it expires."""

    __tablename__ = "connect_states"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    provider: Mapped[str] = mapped_column(String(40))
    return_url: Mapped[str | None] = mapped_column(String(1000))  # where the callback sends the admin back
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Suppression(Base):
    """An erased person that later syncs neither create nor link (while the tenant's `suppress_erased` is on):
    one-way digests only, never the email or id itself (domain/suppression.py)."""

    __tablename__ = "suppressions"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    email_digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # of the normalized email
    source_digest: Mapped[str | None] = mapped_column(String(64))  # of the source user id, when it was linked
    key_id: Mapped[str] = mapped_column(String(16))  # the fingerprint of the secret that made the digests
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
