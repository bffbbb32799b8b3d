"""Reads and writes of tenants' sync schedules and of which tenants a backfill covers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.schedules import Schedule
from store.models import Integration, utcnow
from store.repo import active_integration, schedule_of


@dataclass(frozen=True)
class TenantSchedule:
    tenant: str
    schedule: Schedule


def set_schedule(engine: Engine, tenant_id: str, schedule: Schedule | None) -> None:
    """Store the tenant's schedule (None: no automatic sync)."""
    with Session(engine) as session, session.begin():
        integration = active_integration(session, tenant_id)
        integration.schedule_cron = schedule.cron if schedule else None
        integration.schedule_interval_seconds = schedule.interval_seconds if schedule else None
        integration.schedule_timezone = schedule.timezone if schedule else None
        integration.updated_at = utcnow()


def scheduled_tenants(engine: Engine) -> list[TenantSchedule]:
    """Every tenant with an active integration and a schedule, by tenant id."""
    with Session(engine) as session:
        integrations = session.scalars(
            select(Integration).where(Integration.state == "active").order_by(Integration.tenant_id)
        )
        return [TenantSchedule(i.tenant_id, schedule) for i in integrations if (schedule := schedule_of(i)) is not None]


def syncable_tenants(engine: Engine) -> list[str]:
    """Tenants a backfill over "all" covers: an active integration with groups (or all users) selected."""
    with Session(engine) as session:
        integrations = session.scalars(
            select(Integration).where(Integration.state == "active").order_by(Integration.tenant_id)
        )
        return [i.tenant_id for i in integrations if i.all_users or i.selected_group_ids]
