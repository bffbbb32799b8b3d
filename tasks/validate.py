"""Validate with pandera: quarantine unusable source users, check the plan, and guard against mass change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandera.errors
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from domain.errors import ExplainedError
from schemas.plan import PlanSchema
from schemas.source_users import REASONS, SourceUserSchema, usable_id
from tasks.report import newly_deactivated

# A run whose in-scope input is mostly invalid fails instead of flagging what is left.
MAX_INVALID_SHARE = 0.5


class MostlyInvalidError(ExplainedError):
    """More than half of the in-scope source users are unusable: something is wrong upstream."""


class InvalidPlanError(ExplainedError):
    """The plan breaks its own contract: a bug, so nothing is loaded."""


class GuardTripped(ExplainedError):
    """The run would flag too many synced employees at once (design.md, Safety)."""


@dataclass(frozen=True)
class ValidatedUsers:
    users: pl.DataFrame  # usable source users
    quarantine: pl.DataFrame  # (record, source_user_id, reason): by source id, never by name or email
    held_user_ids: pl.Series  # ids of quarantined users: their employees are kept as they are


def _reason(column: str, check: str, failure_case: str | None) -> str:
    if column == "problem":
        return failure_case or "unusable record"
    for (col, name), text in REASONS.items():
        if col == column and check.startswith(name):
            return text
    return f"{column} fails {check}"


def validate_source_users(users: pl.DataFrame) -> ValidatedUsers:
    """Split the in-scope source users into usable and quarantined (with every reason found)."""
    try:
        SourceUserSchema.validate(users, lazy=True)
        bad = pl.DataFrame(schema={"index": pl.Int64(), "reason": pl.String()})
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        if "index" not in cases.columns or cases.get_column("index").null_count():
            raise  # a schema-wide failure (a missing column): the extract broke its contract
        bad = cases.select(
            index=pl.col("index").cast(pl.Int64()),
            reason=pl.struct("column", "check", "failure_case").map_elements(
                lambda c: _reason(c["column"], c["check"], c["failure_case"]), return_dtype=pl.String()
            ),
        )
    reasons = (
        bad.unique()
        .sort("index", "reason")
        .group_by("index", maintain_order=True)
        .agg(reason=pl.col("reason").str.join("; "))
    )
    indexed = users.with_row_index("index").with_columns(pl.col("index").cast(pl.Int64()))
    quarantined = indexed.join(reasons, on="index", how="inner", validate="1:1")
    usable = indexed.join(reasons, on="index", how="anti").drop("index")
    # An id the columns cannot hold (domain/ids.py) is reported by position only; it still holds its employee.
    reportable = pl.when(usable_id("user_id")).then(pl.col("user_id"))
    quarantine = quarantined.select("record", source_user_id=reportable, reason=pl.col("reason"))
    held = quarantined.get_column("user_id").drop_nulls().unique()
    if users.height and quarantine.height / users.height > MAX_INVALID_SHARE:
        raise MostlyInvalidError(
            f"{quarantine.height} of {users.height} source users in scope are unusable; "
            "the source looks broken, so nothing was changed"
        )
    return ValidatedUsers(users=usable, quarantine=quarantine, held_user_ids=held)


def validate_plan(plan: pl.DataFrame) -> pl.DataFrame:
    try:
        return PlanSchema.validate(plan, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        checks = sorted(set(errors.failure_cases.get_column("check").cast(pl.String()).to_list()))
        raise InvalidPlanError(f"the match plan breaks its contract: {', '.join(checks)}") from None


# A provider that fills neither `group.user_ids` nor `employee.groups[]` (design.md, "Providers").
NO_MEMBERSHIPS = (
    "the source states no group membership at all (no group lists its members and no user names a group), so "
    "selected groups hold nobody with this provider: sync all users instead (`provision filter TENANT "
    '--all-users`, or "All users" on the settings page)'
)


@dataclass(frozen=True)
class Guard:
    max_share: float = 0.10
    min_count: int = 10


def check_guard(
    plan: pl.DataFrame,
    *,
    in_scope: int,
    guard: Guard,
    override: bool,
    selected_groups: Sequence[str] = (),
    missing_groups: Sequence[str] = (),
    memberships_stated: bool = True,
) -> str | None:
    """Why the run must stop before loading, or None. `override` lets an engineer proceed anyway.

    Every employee the run would flag (non_matching, terminated), deactivate or delete counts toward the
    limit, whatever its status before: an unmanaged employee flagged after a reconnect counts as much as
    a synced one, and so does a flagged one the policy deletes. The share is of the employees not flagged
    before the run (synced and unmanaged ones), so that a long list of old flags does not dilute it.

    Two stops come before the share, whatever the thresholds (a small tenant never reaches `min_count`):
    - every selected group gone from the source (`missing_groups` of the filter stage equal to
      `selected_groups`): the selection no longer means anything, so the admin chooses again, even when
      the tenant has no employee yet;
    - no valid user in scope (`in_scope`: the usable source users after filter and validate, not the
      records fetched) while the tenant has employees not flagged before, or while the run would still
      change some (a policy's deletions of old flags): an empty group listing, a group emptied upstream or
      a lone junk record is not "everyone left" (keycloak#24669). When the source states no group membership
      at all (`memberships_stated` false: no group lists members, no user names a group), groups cannot
      select anyone for this provider: the run stops and says so even for a tenant without employees."""
    employees = plan.filter(pl.col("employee_id").is_not_null())
    unflagged = employees.filter(pl.col("old_status").is_in(["synced", "unmanaged"])).height
    affected = employees.filter(
        pl.col("action").is_in(["non_matching", "terminated", "deleted"]) | newly_deactivated()
    ).height
    reason = None
    if selected_groups and set(missing_groups) >= set(selected_groups):
        gone = ", ".join(sorted(missing_groups))
        reason = f"none of the selected groups is listed by the source any more (missing: {gone}); " + (
            NO_MEMBERSHIPS if not memberships_stated else "choose the groups again (`provision filter`)"
        )
    elif in_scope == 0 and (unflagged > 0 or affected > 0 or (selected_groups and not memberships_stated)):
        reason = (
            "there are no users in scope (no valid source user in the tenant's selection) while the tenant has "
            f"{unflagged} employees not flagged before and the run would flag, deactivate or delete {affected}"
        )
        if selected_groups and not memberships_stated:
            reason += f"; {NO_MEMBERSHIPS}"
    elif affected >= guard.min_count and affected > guard.max_share * unflagged:
        reason = (
            f"the run would flag, deactivate or delete {affected} employees of {unflagged} not flagged before "
            f"(limit: more than {guard.max_share:.0%} and at least {guard.min_count})"
        )
    if reason and override:
        return None
    return reason


def check_plan(
    plan: pl.DataFrame,
    in_scope: int,
    guard: Guard,
    override_guard: bool,
    selected_groups: Sequence[str] = (),
    missing_groups: Sequence[str] = (),
    memberships_stated: bool = True,
) -> tuple[pl.DataFrame, str | None]:
    """The validate-plan stage: the checked plan, and why the guard stops the run (None: go on)."""
    plan = validate_plan(plan)
    reason = check_guard(
        plan,
        in_scope=in_scope,
        guard=guard,
        override=override_guard,
        selected_groups=selected_groups,
        missing_groups=missing_groups,
        memberships_stated=memberships_stated,
    )
    return plan, reason


validate_source_task = task(name="validate source users", cache_policy=NO_CACHE, persist_result=False)(
    validate_source_users
)
validate_plan_task = task(name="validate plan", cache_policy=NO_CACHE, persist_result=False)(check_plan)
