"""Group sync (design.md, "Lifecycle after matching"): which selected groups each employee belongs to after
the run, and who joined or left which group. Set-based: polars joins over the plan, no loop.

The memberships kept are those of the employees in scope, of the selected groups (of every listed group
when the tenant syncs all users), directly or through a child group: what a training that follows a group
needs, and nothing else (group names stay in the group list). An employee the run could not judge keeps
the memberships it had; one the run deletes leaves its groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from schemas.plan import MEMBERSHIP_CHANGE_SCHEMA
from store.db import make_engine
from store.frames import read_memberships
from tasks.match import UNJUDGED


def wanted_memberships(
    flat_memberships: pl.DataFrame,
    in_scope_user_ids: pl.Series,
    listed_group_ids: pl.Series,
    *,
    selected_group_ids: Sequence[str],
    all_users: bool,
) -> pl.DataFrame:
    """(source_user_id, group_id): the in-scope users' memberships of the groups the tenant keeps, each pair once
    as flatten's memberships hold each pair once (tasks/flatten.py)."""
    kept_groups = listed_group_ids if all_users else pl.Series(list(selected_group_ids), dtype=pl.String())
    return flat_memberships.filter(
        pl.col("group_id").is_in(kept_groups.implode()) & pl.col("user_id").is_in(in_scope_user_ids.implode())
    ).select(source_user_id=pl.col("user_id"), group_id=pl.col("group_id"))


def membership_changes(plan: pl.DataFrame, wanted: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """Who joins and who leaves which group in this run (MEMBERSHIP_CHANGE_SCHEMA), from the plan (who the
    employees are after the run, linked to which source user), the memberships wanted and the current ones
    (employee_id, group_id)."""
    employee = pl.col("employee_id").is_not_null()
    # Only the plan's three columns these need (filtering the whole plan copied all 22 of its columns).
    who = plan.select("employee_id", "source_user_id", "action")
    unjudged = who.filter(employee & pl.col("action").is_in(UNJUDGED)).select("employee_id")
    staying = who.filter((employee & ~pl.col("action").is_in(["deleted", *UNJUDGED])) | (pl.col("action") == "created"))
    want = (
        staying.select("employee_id", "source_user_id")
        .drop_nulls("source_user_id")
        .join(wanted, on="source_user_id", how="inner")
    )
    want, held, pair = _paired(want, current)
    joined = want.join(held.select(pair), on=pair, how="anti")  # a null id (created) never matches
    left = (
        held.join(unjudged, on="employee_id", how="anti")
        .join(want.select(pair).drop_nulls(), on=pair, how="anti")
        .join(who.filter(employee).select("employee_id", "source_user_id"), on="employee_id", how="left")
    )
    changes = pl.concat(
        [
            joined.select("employee_id", "source_user_id", "group_id", action=pl.lit("joined")),
            left.select("employee_id", "source_user_id", "group_id", action=pl.lit("left")),
        ]
    )
    return changes.cast(pl.Schema(MEMBERSHIP_CHANGE_SCHEMA)).sort("action", "group_id", "employee_id", nulls_last=True)


def _paired(want: pl.DataFrame, current: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """`want` and `current` with one integer naming each (employee, group) pair, and the columns to join them on.

    A join on (employee_id, group_id) hashes an encoded row of both per membership; one Int64 key, the employee id
    shifted left past a number for the group id, takes half the memory: at a million employees in three million
    memberships, 0.3 GB at the peak instead of 0.7 GB (bench/README.md, "Memory"). Where the employee ids are too
    large to leave room for the group numbers (never with a database sequence), or where nothing is stored to
    compare with (a first sync), the pair itself is the key.
    """
    if current.is_empty():
        return want, current, ["employee_id", "group_id"]
    numbers = pl.concat([want.get_column("group_id"), current.get_column("group_id")]).unique().to_frame()
    bits = max(numbers.height, 1).bit_length()
    largest = max(want.get_column("employee_id").max() or 0, current.get_column("employee_id").max() or 0)
    if not 0 <= int(largest) < 1 << (62 - bits):  # type: ignore[arg-type]
        return want, current, ["employee_id", "group_id"]
    numbers = numbers.with_row_index("group_number")

    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        number = pl.col("group_number").cast(pl.Int64())
        return frame.join(numbers, on="group_id", how="left").select(
            pl.exclude("group_number"), pair=pl.col("employee_id") * (1 << bits) + number
        )

    return keyed(want), keyed(current), ["pair"]


def current_memberships(tenant: str) -> pl.DataFrame:
    """The tenant's memberships as the last run left them (employee_id, group_id), in one query."""
    return read_memberships(make_engine(), tenant)
