"""Match source users to the tenant's employees and decide one action for each (design.md, rules 1-6).

Set-based: every rule is a polars join; no loop or query per employee.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from domain.policy import Policy
from schemas.employees import EMPLOYEE_SCHEMA
from schemas.plan import FIELDS
from store.db import make_engine
from store.frames import read_employees

__all__ = [
    "EMPLOYEE_SCHEMA",
    "PLAN_COLUMNS",
    "ended_user_ids",
    "match",
    "match_task",
    "match_tenant",
    "with_end_dates",
    "with_flag_reasons",
    "with_policy",
]

PLAN_COLUMNS = [
    "employee_id",
    "source_user_id",
    "action",
    "reason",
    "old_email",
    "new_email",
    "new_email_norm",
    "old_first_name",
    "new_first_name",
    "old_last_name",
    "new_last_name",
    "old_display_name",
    "new_display_name",
    "old_status",
    "new_status",
    "new_employment_status",
    "changed_fields",
    "flagged_at",  # when the employee was first flagged, before this run (the policy's grace period)
    "old_deactivated",
    "new_deactivated",
    "old_leave_date",
    "new_leave_date",
]

_SOURCE_VALUES = ["email", "first_name", "last_name", "display_name"]


def _keep_as_is(employees: pl.DataFrame, action: str, reason: str | None) -> pl.DataFrame:
    """Plan rows that leave employees exactly as they are."""
    return employees.select(
        "employee_id",
        "source_user_id",
        action=pl.lit(action),
        reason=pl.lit(reason, dtype=pl.String()),
        **{f"old_{f}": pl.col(f) for f in FIELDS},
        **{f"new_{f}": pl.col(f) for f in FIELDS},
        new_email_norm=pl.col("email_norm"),
        new_employment_status=pl.col("employment_status"),
        flagged_at=pl.col("flagged_at"),
        old_deactivated=pl.col("deactivated"),
        new_deactivated=pl.col("deactivated"),
        old_leave_date=pl.col("leave_date"),
        new_leave_date=pl.col("leave_date"),
    )


def _blocked_claims(claims: pl.DataFrame, employees: pl.DataFrame) -> pl.DataFrame:
    """The claims on an email (moves of matched employees, new hires) that another employee keeps.

    `claims` has one row per claim (source_user_id, employee_id or null for a hire, new_email_norm);
    their targets are distinct, since two source users with one email never get this far. A claim is
    blocked when an employee that is not moving away (or whose own move is blocked) keeps its target.
    Judged against the emails after the run, not before it: a chain (one leaves b@ for c@ while another
    takes b@) or a swap applies in one run, so that a second run on the same source has nothing left
    to apply (idempotence). Grows one blocked level per pass; claims only ever get blocked, so it ends.
    """
    moving = claims.filter(pl.col("employee_id").is_not_null()).select("employee_id")
    blocked = claims.clear()
    while True:
        still_moving = moving.join(blocked.select("employee_id").drop_nulls(), on="employee_id", how="anti")
        kept = employees.join(still_moving, on="employee_id", how="anti").select(new_email_norm=pl.col("email_norm"))
        grown = claims.join(kept, on="new_email_norm", how="semi")
        if grown.height == blocked.height:
            return grown
        blocked = grown


def _changed_fields() -> pl.Expr:
    """The fields a write changes, comma-separated: the audited ones (FIELDS) and the end date."""
    changed = [
        pl.when(pl.col(f"old_{f}").ne_missing(pl.col(f"new_{f}"))).then(pl.lit(f)) for f in [*FIELDS, "leave_date"]
    ]
    return pl.concat_str(changed, separator=",", ignore_nulls=True).replace("", None)


def match(
    users: pl.DataFrame,
    employees: pl.DataFrame,
    held_user_ids: pl.Series | None = None,
) -> pl.DataFrame:
    """The plan: one row per employee of the tenant and per in-scope source user (PLAN_COLUMNS).

    `users` are the valid in-scope source users (unique ids). `held_user_ids` are ids of in-scope
    source users that were quarantined: their linked employees are kept exactly as they are, since
    a record the source still lists is no evidence that the person left.
    """
    held = pl.DataFrame(
        {"source_user_id": held_user_ids if held_user_ids is not None else []},
        schema={"source_user_id": pl.String()},
    )
    source = users.select(
        "user_id",
        *_SOURCE_VALUES,
        "email_norm",
        "employment_status",
        leave_date=pl.col("terminated_at").dt.strftime("%Y-%m-%d"),
    ).with_columns(active=pl.col("employment_status") == "active")

    # Rule 6: two source users with one email. Neither may claim it; whoever holds it keeps it.
    dup_email = pl.col("email_norm").is_duplicated()
    duplicates = source.filter(dup_email)
    source = source.filter(~dup_email)
    held = pl.concat([held, duplicates.select(source_user_id="user_id")]).unique()

    linked_employees = employees.filter(pl.col("source_user_id").is_not_null())
    # Rule 1: a link equal to a source user id is that employee.
    by_id = source.join(
        linked_employees,
        left_on="user_id",
        right_on="source_user_id",
        how="inner",
        validate="1:1",
        suffix="_emp",
        coalesce=False,
    )
    rest = source.join(by_id.select("user_id"), on="user_id", how="anti")
    # Rule 2: else an unlinked employee with the same email is that employee, and gets the link.
    by_email = rest.join(
        employees.filter(pl.col("source_user_id").is_null()),
        on="email_norm",
        how="inner",
        validate="1:1",
        suffix="_emp",
        coalesce=False,
    )
    unmatched = rest.join(by_email.select("user_id"), on="user_id", how="anti")

    matched = pl.concat(
        [by_id.with_columns(newly_linked=pl.lit(False)), by_email.with_columns(newly_linked=pl.lit(True))],
        how="diagonal_relaxed",
    )
    # Rule 4: the source is the truth for names and email; status follows the source's status.
    matched = matched.select(
        "employee_id",
        source_user_id=pl.col("user_id"),
        newly_linked=pl.col("newly_linked"),
        old_email=pl.col("email_emp"),
        old_email_norm=pl.col("email_norm_emp"),
        old_first_name=pl.col("first_name_emp"),
        old_last_name=pl.col("last_name_emp"),
        old_display_name=pl.col("display_name_emp"),
        old_status=pl.col("status"),
        new_email=pl.col("email"),
        new_email_norm=pl.col("email_norm"),
        new_first_name=pl.col("first_name"),
        new_last_name=pl.col("last_name"),
        new_display_name=pl.col("display_name"),
        new_status=pl.when(pl.col("active")).then(pl.lit("synced")).otherwise(pl.lit("terminated")),
        new_employment_status=pl.col("employment_status"),
        flagged_at=pl.col("flagged_at"),
        old_deactivated=pl.col("deactivated"),
        new_deactivated=pl.col("deactivated"),
        old_leave_date=pl.col("leave_date_emp"),
        new_leave_date=pl.col("leave_date"),
    )
    # Rule 6: an email change onto an email another employee keeps is not applied; nor is a new
    # employee created with such an email (it is not merged into that employee either).
    new_active = unmatched.filter(pl.col("active"))
    moves = pl.col("new_email_norm") != pl.col("old_email_norm")
    claims = pl.concat(
        [
            matched.filter(moves).select("source_user_id", "employee_id", "new_email_norm"),
            new_active.select(
                source_user_id=pl.col("user_id"),
                employee_id=pl.lit(None, dtype=pl.Int64()),
                new_email_norm=pl.col("email_norm"),
            ),
        ]
    )
    blocked = _blocked_claims(claims, employees)
    collides = blocked.filter(pl.col("employee_id").is_not_null())
    email_conflicts = employees.join(collides.select("employee_id"), on="employee_id", how="semi")
    if not collides.is_empty():  # (rarely: the anti join copies every matched row, 0.1 GB at 300k employees)
        matched = matched.join(collides.select("employee_id"), on="employee_id", how="anti")

    status_changed = pl.col("old_status") != pl.col("new_status")
    matched = matched.with_columns(changed_fields=_changed_fields()).with_columns(
        # An employee linked by email to an inactive source user is flagged by this run: `terminated` (counted,
        # given its reason, inside the guard and the policy), the link written with it.
        action=pl.when(status_changed & (pl.col("new_status") == "terminated"))
        .then(pl.lit("terminated"))
        .when(pl.col("newly_linked"))
        .then(pl.lit("linked"))
        .when(status_changed & pl.col("old_status").is_in(["terminated", "non_matching"]))
        .then(pl.lit("reactivated"))
        .when(pl.col("changed_fields").is_not_null())
        .then(pl.lit("updated"))
        .otherwise(pl.lit("unchanged")),
        reason=pl.lit(None, dtype=pl.String()),
    )

    # Rule 3: an active source user still unmatched becomes a new employee; an inactive one does not.
    # An email another employee keeps (linked to someone else) is not merged into a new person.
    reused = new_active.join(
        blocked.filter(pl.col("employee_id").is_null()).select(user_id=pl.col("source_user_id")),
        on="user_id",
        how="semi",
    )
    creates = (
        new_active.join(reused.select("user_id"), on="user_id", how="anti")
        .select(
            employee_id=pl.lit(None, dtype=pl.Int64()),
            source_user_id=pl.col("user_id"),
            action=pl.lit("created"),
            reason=pl.lit(None, dtype=pl.String()),
            **{f"old_{f}": pl.lit(None, dtype=pl.String()) for f in FIELDS},
            **{f"new_{f}": pl.col(f) for f in _SOURCE_VALUES},
            new_status=pl.lit("synced"),
            new_email_norm=pl.col("email_norm"),
            new_employment_status=pl.col("employment_status"),
            old_deactivated=pl.lit(False),
            new_deactivated=pl.lit(False),
            old_leave_date=pl.lit(None, dtype=pl.String()),
            new_leave_date=pl.col("leave_date"),
        )
        .with_columns(changed_fields=_changed_fields())
    )
    skipped = unmatched.filter(~pl.col("active")).select(
        source_user_id=pl.col("user_id"), action=pl.lit("skipped_inactive")
    )
    source_conflicts = pl.concat(
        [
            duplicates.select(
                source_user_id=pl.col("user_id"),
                reason=pl.lit("another source user has the same email"),
            ),
            reused.select(
                source_user_id=pl.col("user_id"),
                reason=pl.lit("email already belongs to another employee"),
            ),
        ]
    ).with_columns(action=pl.lit("conflict"))

    # Employees no source user claimed.
    claimed = pl.concat([matched.select("employee_id"), email_conflicts.select("employee_id")])
    unclaimed = employees.join(claimed, on="employee_id", how="anti")
    is_held = pl.col("source_user_id").is_in(held.get_column("source_user_id").implode()).fill_null(False)
    kept = _keep_as_is(unclaimed.filter(is_held), "kept", "its source user is quarantined or in conflict")
    unclaimed = unclaimed.filter(~is_held)
    already = pl.col("status") == "non_matching"
    still = _keep_as_is(unclaimed.filter(already), "still_non_matching", None)
    # Rule 5: an employee that matches no source user is flagged, never deleted.
    flagged = _keep_as_is(unclaimed.filter(~already), "non_matching", None).with_columns(
        new_status=pl.lit("non_matching")
    )
    conflicted = _keep_as_is(
        email_conflicts, "conflict", "new email already belongs to another employee"
    )  # linked by id, so its current link already names the source user that asked

    plan = pl.concat(
        [matched, creates, kept, still, flagged, conflicted, skipped, source_conflicts],
        how="diagonal_relaxed",
    )
    plan = plan.with_columns(
        changed_fields=pl.when(pl.col("action") == "non_matching")
        .then(pl.lit("status"))
        .otherwise(pl.col("changed_fields"))
    )
    return plan.select(PLAN_COLUMNS)


# Why an employee was flagged in a run (design.md, "Lifecycle after matching"), kept in the run's changes.
GONE = "gone from the source: its source user is no longer listed"
MOVED_OUT = "moved out of the selected groups: its source user is listed, outside them"
NEVER_MATCHED = "never matched: no source user has its email"
DISABLED = "disabled or terminated in the source"
ENDED = "end date reached: the source's end date for it has passed"
FLAG_REASON_NAMES = {
    GONE: "gone",
    MOVED_OUT: "moved_out",
    NEVER_MATCHED: "never_matched",
    DISABLED: "disabled",
    ENDED: "ended",
}


def with_end_dates(users: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """The source users as matching sees them at `now`: one whose end date (`terminated_at`) has been reached is
    inactive whatever its status says (design.md, "Providers"); one ahead changes nothing yet (the match stores it
    as the employee's planned leave date)."""
    reached = (pl.col("terminated_at") <= pl.lit(now, dtype=pl.Datetime("us", "UTC"))).fill_null(False)
    return users.with_columns(
        employment_status=pl.when(reached).then(pl.lit("inactive")).otherwise(pl.col("employment_status"))
    )


def ended_user_ids(users: pl.DataFrame, now: datetime) -> pl.Series:
    """The ids of the source users whose end date has been reached at `now`."""
    reached = pl.col("terminated_at") <= pl.lit(now, dtype=pl.Datetime("us", "UTC"))
    return users.filter(reached.fill_null(False)).get_column("user_id")


def with_flag_reasons(
    plan: pl.DataFrame, listed_ids: pl.Series, in_scope_ids: pl.Series, ended_ids: pl.Series | None = None
) -> pl.DataFrame:
    """The plan with the reason of every employee it flags, from its link against what the source listed
    (`listed_ids`, every source user read), what the selection kept (`in_scope_ids`) and whose end date has
    been reached (`ended_ids`: terminated for that, not for being disabled): set-based, one expression over
    the plan. A quarantined or conflicting source user is never a flag: those employees are kept as they
    are, with that reason already."""
    link = pl.col("source_user_id")
    listed = link.is_in(listed_ids.implode()).fill_null(False)
    in_scope = link.is_in(in_scope_ids.implode()).fill_null(False)
    ended = link.is_in((ended_ids if ended_ids is not None else pl.Series([], dtype=pl.String())).implode())
    flag_reason = (
        pl.when(link.is_null())
        .then(pl.lit(NEVER_MATCHED))
        .when(listed & ~in_scope)
        .then(pl.lit(MOVED_OUT))
        .otherwise(pl.lit(GONE))
    )
    return plan.with_columns(
        reason=pl.when(pl.col("action") == "non_matching")
        .then(flag_reason)
        .when(pl.col("action") == "terminated")
        .then(pl.when(ended.fill_null(False)).then(pl.lit(ENDED)).otherwise(pl.lit(DISABLED)))
        .otherwise(pl.col("reason"))
    )


FLAGGED = ["non_matching", "terminated"]
# Employees this run could not judge (a quarantined or conflicting source user): the policy leaves them alone.
UNJUDGED = ["kept", "conflict"]
DEACTIVATED = "deactivated by the deprovisioning policy: flagged in the source"


def deleted_reason(policy: Policy) -> str:
    return f"deleted by the deprovisioning policy: flagged for at least {policy.grace_days} days"


def with_policy(plan: pl.DataFrame, policy: Policy, now: datetime) -> pl.DataFrame:
    """The plan with the tenant's deprovisioning policy applied (domain/policy.py): set-based, over the plan.

    A judged employee that ends flagged is deactivated (modes deactivate and delete) and, in mode delete,
    deleted once it has been flagged for the grace period (at least a day: never by the run that flags it).
    One that ends synced is active again, whatever the mode: a rehire always restores. Kept and conflicting
    employees keep their state. Deleted rows keep their old values (the audit of what was removed) and have
    no new ones.
    """
    employee = pl.col("employee_id").is_not_null()
    judged = employee & ~pl.col("action").is_in(UNJUDGED)
    flagged = pl.col("new_status").is_in(FLAGGED)
    was = pl.col("old_deactivated").fill_null(False)
    deactivated = (
        pl.when(~employee)
        .then(pl.col("new_deactivated"))
        .when(~judged)
        .then(was)
        .when(flagged)
        .then(was | policy.deactivates)
        .otherwise(False)
    )
    cutoff = now - timedelta(days=policy.grace_days)
    due = judged & flagged & (pl.col("flagged_at").fill_null(now) <= cutoff) & policy.deletes
    quiet = pl.col("action").is_in(["unchanged", "still_non_matching"])
    changed = pl.col("new_deactivated") != was
    plan = plan.with_columns(new_deactivated=deactivated, due=due)
    plan = plan.with_columns(
        action=pl.when("due")
        .then(pl.lit("deleted"))
        .when(quiet & changed & pl.col("new_deactivated"))
        .then(pl.lit("deactivated"))
        .when(quiet & changed)
        .then(pl.lit("reactivated"))
        .otherwise(pl.col("action")),
        reason=pl.when("due")
        .then(pl.lit(deleted_reason(policy)))
        .when(quiet & changed & pl.col("new_deactivated"))
        .then(pl.lit(DEACTIVATED))
        .otherwise(pl.col("reason")),
        changed_fields=pl.when("due")
        .then(pl.lit(",".join(FIELDS)))
        .when(employee & changed)
        .then(pl.concat_str(pl.col("changed_fields"), pl.lit("deactivated"), separator=",", ignore_nulls=True))
        .otherwise(pl.col("changed_fields")),
    )
    gone = {f"new_{f}": pl.when("due").then(None).otherwise(pl.col(f"new_{f}")) for f in _NEW_VALUES}
    return plan.with_columns(**gone).drop("due")


_NEW_VALUES = [*FIELDS, "email_norm", "employment_status", "deactivated"]


def match_tenant(tenant: str, users: pl.DataFrame, held_user_ids: pl.Series) -> pl.DataFrame:
    """The match stage: reads the tenant's employees (one query) and matches them."""
    return match(users, read_employees(make_engine(), tenant), held_user_ids)


match_task = task(name="match", cache_policy=NO_CACHE, persist_result=False)(match_tenant)
