"""Runs of the pipeline for tests that start from frames instead of a source: the stage order is the
pipeline's own (pipeline/run.py), never re-assembled here."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import polars as pl
from sqlalchemy import Engine

from domain.policy import Policy
from pipeline import PLAIN, PlannedRun, Selection, Stages, load_planned, plan_snapshot
from sources.model import GROUP_SCHEMA, MEMBERSHIP_SCHEMA, SourceSnapshot
from store.frames import STORED_MEMBERSHIP_SCHEMA
from store.repo import start_run
from tasks.match import match
from tasks.validate import Guard

ALL_USERS = Selection(all_users=True)


def snapshot_of(users: pl.DataFrame) -> SourceSnapshot:
    """A source that lists these users and no groups."""
    return SourceSnapshot(
        users=users, memberships=pl.DataFrame(schema=MEMBERSHIP_SCHEMA), groups=pl.DataFrame(schema=GROUP_SCHEMA)
    )


def against(employees: pl.DataFrame) -> Stages:
    """The plain stages, matching against these employees instead of the tenant's in the database."""
    return replace(
        PLAIN,
        match=lambda _tenant, users, held: match(users, employees, held),
        memberships=lambda _tenant: pl.DataFrame(schema=STORED_MEMBERSHIP_SCHEMA),
    )


def sync_snapshot(
    engine: Engine,
    tenant: str,
    snapshot: SourceSnapshot,
    *,
    selection: Selection = ALL_USERS,
    dry_run: bool = False,
    policy: Policy | None = None,
    now: datetime | None = None,
    guard: Guard | None = None,
) -> tuple[str, PlannedRun]:
    """A recorded run of everything after extract, loaded through the engine's database (the default one,
    as the `database_url` fixture sets it). The guard is overridden unless one is given: most of these
    tests are about the load. `now` is the policy's clock (the grace period). The group list is stored, as a
    run stores it."""
    run_id = start_run(engine, tenant, trigger="cli", parameters={}, flow_run_id=None, dry_run=dry_run)
    planned = plan_snapshot(
        tenant, snapshot, selection, guard=guard, override_guard=guard is None, policy=policy, now=now, engine=engine
    )
    return run_id, load_planned(tenant, run_id, planned, dry_run=dry_run)
