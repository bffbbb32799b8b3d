"""The stages of one sync, in order, written once (design.md, "The per-tenant flow").

    extract -> flatten -> groups -> filter -> validate users -> match -> validate plan -> load [-> report]

`read_groups` is the first three (the group list an admin chooses from), `plan_snapshot` everything from
flatten to validate plan on a snapshot already read, `plan_run` a whole plan from the source, and
`sync_run` a plan and its load. Each stage is called through a `Progress`, which knows the stage running
now (the one a failure is blamed on) and logs one line of figures per stage, never personal data. The
report belongs to the door that records the run (the flow publishes artifacts; the CLI prints).

The stage functions come in a `Stages` bundle: `PLAIN` calls the plain functions of `tasks/`, the flow
passes its Prefect task wrappers of the same functions, and a test may swap one stage (e.g. `match`
against a frame of employees instead of the database).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import polars as pl
from sqlalchemy import Engine

from domain.policy import Policy
from sources.model import SourceSnapshot
from store.models import Integration, utcnow
from store.repo import policy_of, replace_groups
from tasks.extract import SourceConfig, extract, source_config
from tasks.filter import Scope, filter_users
from tasks.flatten import FlatGroups, flatten
from tasks.load import load
from tasks.match import ended_user_ids, match_tenant, with_end_dates, with_flag_reasons, with_policy
from tasks.memberships import current_memberships, membership_changes, wanted_memberships
from tasks.report import count
from tasks.suppress import Suppressed, suppress_tenant
from tasks.validate import Guard, ValidatedUsers, check_plan, validate_source_users

# Every stage of a run, in the order it runs. `report` is the recording door's (flows/sync_tenant.py).
STAGES = ("extract", "flatten", "groups", "filter", "validate users", "match", "validate plan", "load", "report")

_log = logging.getLogger("provisioning.pipeline")
T = TypeVar("T")


@dataclass(frozen=True)
class Stages:
    """The function each stage calls; every one has the signature of the plain function it defaults to."""

    extract: Callable[[SourceConfig], SourceSnapshot] = extract
    flatten: Callable[[pl.DataFrame, pl.DataFrame, pl.DataFrame], FlatGroups] = flatten
    filter: Callable[..., Scope] = filter_users  # (users, memberships, groups, *, selected_group_ids, all_users)
    validate_users: Callable[[pl.DataFrame], ValidatedUsers] = validate_source_users
    match: Callable[[str, pl.DataFrame, pl.Series], pl.DataFrame] = match_tenant  # (tenant, users, held ids)
    # (plan, valid users in scope, guard, override, selected group ids, selected group ids the source no longer lists)
    validate_plan: Callable[..., tuple[pl.DataFrame, str | None]] = check_plan
    # (tenant, run, plan, quarantine, membership changes, dry)
    load: Callable[[str, str, pl.DataFrame, pl.DataFrame, pl.DataFrame, bool], int] = load
    memberships: Callable[[str], pl.DataFrame] = current_memberships  # (tenant) -> (employee_id, group_id)
    suppress: Callable[[str, pl.DataFrame], Suppressed] = suppress_tenant  # (tenant, users in scope), part of filter


PLAIN = Stages()


@dataclass
class Progress:
    """Where a run is: the stage running now (blamed if it fails) and the stages done, in order."""

    log: Callable[[str], Any] = _log.info
    done: list[str] = field(default_factory=list)
    current: str | None = None

    def step(self, stage: str, summary: Callable[[T], str], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one stage, then log its figures (`summary` of its result: counts only, no personal data)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.current = stage
        result = fn(*args, **kwargs)
        self.current = None
        self.done.append(stage)
        self.log(f"{stage}: {summary(result)}")
        return result

    @property
    def failed_stage(self) -> str:
        """The stage a failure is blamed on: the one running, else the first not done."""
        return self.current or next((s for s in STAGES if s not in self.done), STAGES[-1])

    @property
    def not_done(self) -> list[str]:
        """The stages after the one that failed (or is running), in order."""
        return list(STAGES[STAGES.index(self.failed_stage) + 1 :])


@dataclass(frozen=True)
class Selection:
    """Which source users a tenant syncs: the members of these groups, or everyone."""

    group_ids: tuple[str, ...] = ()
    all_users: bool = False

    @classmethod
    def of(cls, integration: Integration) -> Selection:
        return cls(group_ids=tuple(integration.selected_group_ids), all_users=integration.all_users)


@dataclass(frozen=True)
class PlannedRun:
    """What a run decided, and (after `sync_run`) what it wrote."""

    plan: pl.DataFrame  # the checked plan: one outcome per employee and per in-scope source user
    quarantine: pl.DataFrame  # (record, source_user_id, reason) of unusable in-scope source users
    groups: pl.DataFrame  # the flat group list, with member counts
    memberships: pl.DataFrame  # who joins and who leaves which group (tasks/memberships.py)
    missing_groups: list[str]  # selected group ids the source no longer lists
    counts: dict[str, int]  # derived from the plan's outcome records (tasks/report.py)
    stop_reason: str | None  # why the mass-change guard stopped the run before loading, or None
    written: int | None = None  # rows the load wrote; None when nothing was loaded


# ---- one line of figures per stage (counts only) ------------------------------------------------


def _extracted(s: SourceSnapshot) -> str:
    read = f"{s.users.height} users, {s.groups.height} groups and {s.memberships.height} memberships read"
    ignored = f"; {s.ignored_group_ids} unusable group ids ignored" if s.ignored_group_ids else ""  # domain/ids.py
    return read + (f" in {s.requests} requests" if s.requests else "") + ignored


def _flattened(f: FlatGroups) -> str:
    return f"{f.groups.height} groups, {f.memberships.height} memberships including inherited ones"


def _scoped(s: Scope) -> str:
    gone = f"; {len(s.missing_groups)} selected groups no longer listed" if s.missing_groups else ""
    suppressed = f"; {s.suppressed} suppressed" if s.suppressed else ""
    return f"{s.users.height} users in scope, {s.filtered_out} outside the selected groups{gone}{suppressed}"


def _validated(v: ValidatedUsers) -> str:
    return f"{v.users.height} usable, {v.quarantine.height} quarantined"


def _matched(matched: tuple[pl.DataFrame, pl.DataFrame]) -> str:
    plan, memberships = matched
    actions = plan.group_by("action").len().sort("action").iter_rows()
    moves = dict(memberships.group_by("action").len().iter_rows())
    groups = f"; {moves.get('joined', 0)} group memberships joined, {moves.get('left', 0)} left"
    return "planned " + (", ".join(f"{action} {n}" for action, n in actions) or "nothing") + groups


def _checked(result: tuple[pl.DataFrame, str | None]) -> str:
    return "plan valid; " + (f"stopped by the guard: {result[1]}" if result[1] else "guard passed")


# ---- the assembly --------------------------------------------------------------------------------


def _flat_groups(
    snapshot: SourceSnapshot, tenant: str, engine: Engine | None, stages: Stages, progress: Progress
) -> FlatGroups:
    flat = progress.step("flatten", _flattened, stages.flatten, snapshot.groups, snapshot.memberships, snapshot.users)
    if engine is not None:  # the filter screen's list, stored as the source returned it
        progress.step(
            "groups", lambda _: f"{flat.groups.height} groups stored", replace_groups, engine, tenant, flat.groups
        )
    return flat


def read_groups(
    engine: Engine | None, config: SourceConfig, *, stages: Stages = PLAIN, progress: Progress | None = None
) -> tuple[SourceSnapshot, FlatGroups]:
    """Extract, flatten and (given an engine) store the group list: what listing the groups and connecting do."""
    progress = progress or Progress()
    snapshot = progress.step("extract", _extracted, stages.extract, config)
    return snapshot, _flat_groups(snapshot, config.tenant, engine, stages, progress)


def refresh_groups(engine: Engine, integration: Integration, *, progress: Progress | None = None) -> pl.DataFrame:
    """The tenant's flattened groups, fresh from its source, stored for the filter screen."""
    return read_groups(engine, source_config(integration), progress=progress)[1].groups


def plan_snapshot(
    tenant: str,
    snapshot: SourceSnapshot,
    selection: Selection,
    *,
    guard: Guard | None = None,
    override_guard: bool = False,
    policy: Policy | None = None,
    now: datetime | None = None,
    engine: Engine | None = None,
    stages: Stages = PLAIN,
    progress: Progress | None = None,
    suppress: bool | None = None,
) -> PlannedRun:
    """Flatten -> (store the groups, given an engine) -> filter -> validate users -> match -> validate plan.

    The match stage decides each employee's outcome, says why it flags one, and applies the deprovisioning
    `policy` as of `now` (the grace period's clock; the current time unless a test sets it). The filter also
    leaves out the people the tenant suppresses (erased ones) when `suppress` is true, by default when given an
    engine: as a run does; a plan on frames alone reads no suppression list."""
    progress = progress or Progress()
    flat = _flat_groups(snapshot, tenant, engine, stages, progress)
    suppressing = engine is not None if suppress is None else suppress

    def scoped(*args: Any, **kwargs: Any) -> Scope:
        """The selected groups' members, less the suppressed ones (where the users in scope are first known)."""
        scope: Scope = stages.filter(*args, **kwargs)
        if not suppressing:
            return scope
        kept = stages.suppress(tenant, scope.users)
        return replace(scope, users=kept.users, suppressed=kept.suppressed)

    scope = progress.step(
        "filter",
        _scoped,
        scoped,
        snapshot.users,
        flat.memberships,
        flat.groups,
        selected_group_ids=list(selection.group_ids),
        all_users=selection.all_users,
    )
    validated = progress.step("validate users", _validated, stages.validate_users, scope.users)

    when = now or utcnow()

    def matched(tenant: str, users: pl.DataFrame, held: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The plan (end dates reached applied first), with why it flags each one and the policy applied, and who
        joins or leaves which group."""
        users = with_end_dates(users, when)
        plan = stages.match(tenant, users, held)
        plan = with_flag_reasons(plan, snapshot.users["user_id"], scope.users["user_id"], ended_user_ids(users, when))
        plan = with_policy(plan, policy or Policy(), when)
        wanted = wanted_memberships(
            flat.memberships,
            scope.users["user_id"],
            flat.groups["group_id"],
            selected_group_ids=selection.group_ids,
            all_users=selection.all_users,
        )
        return plan, membership_changes(plan, wanted, stages.memberships(tenant))

    plan, memberships = progress.step("match", _matched, matched, tenant, validated.users, validated.held_user_ids)
    plan, stop_reason = progress.step(
        "validate plan",
        _checked,
        stages.validate_plan,
        plan,
        validated.users.height,  # the guard's empty rule: valid users in scope, not records fetched
        guard or Guard(),
        override_guard,
        selection.group_ids,
        scope.missing_groups,
        memberships_stated=not snapshot.memberships.is_empty(),
    )
    counts = count(
        plan,
        fetched=snapshot.users.height,
        filtered_out=scope.filtered_out,
        invalid=validated.quarantine.height,
        memberships=memberships,
        suppressed=scope.suppressed,
    )
    return PlannedRun(
        plan=plan,
        quarantine=validated.quarantine,
        groups=flat.groups,
        memberships=memberships,
        missing_groups=scope.missing_groups,
        counts=counts,
        stop_reason=stop_reason,
    )


def plan_run(
    engine: Engine,
    integration: Integration,
    *,
    override_guard: bool = False,
    now: datetime | None = None,
    stages: Stages = PLAIN,
    progress: Progress | None = None,
) -> PlannedRun:
    """The whole plan of a tenant's run, from its source to the guard; nothing written but the group list."""
    progress = progress or Progress()
    snapshot = progress.step("extract", _extracted, stages.extract, source_config(integration))
    return plan_snapshot(
        integration.tenant_id,
        snapshot,
        Selection.of(integration),
        guard=Guard(max_share=integration.guard_max_share, min_count=integration.guard_min_count),
        override_guard=override_guard,
        policy=policy_of(integration),
        now=now,
        engine=engine,
        stages=stages,
        progress=progress,
    )


def load_planned(
    tenant: str,
    run_id: str,
    planned: PlannedRun,
    *,
    dry_run: bool,
    stages: Stages = PLAIN,
    progress: Progress | None = None,
) -> PlannedRun:
    """Load a plan the guard let through; a stopped plan is returned as it is, nothing written."""
    if planned.stop_reason:
        return planned
    progress = progress or Progress()
    summary: Callable[[int], str] = (
        (lambda _: "dry run: nothing written") if dry_run else (lambda n: f"{n} rows written")
    )
    written = progress.step(
        "load", summary, stages.load, tenant, run_id, planned.plan, planned.quarantine, planned.memberships, dry_run
    )
    return replace(planned, written=written)


def sync_run(
    engine: Engine,
    integration: Integration,
    run_id: str,
    *,
    dry_run: bool,
    override_guard: bool = False,
    now: datetime | None = None,
    stages: Stages = PLAIN,
    progress: Progress | None = None,
) -> PlannedRun:
    """Plan a tenant's run and load it (unless the guard stopped it, or it is a dry run)."""
    progress = progress or Progress()
    planned = plan_run(engine, integration, override_guard=override_guard, now=now, stages=stages, progress=progress)
    return load_planned(integration.tenant_id, run_id, planned, dry_run=dry_run, stages=stages, progress=progress)
