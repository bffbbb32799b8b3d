"""Keep the source users who are members (directly or through a child group) of a selected group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE


@dataclass(frozen=True)
class Scope:
    users: pl.DataFrame  # the source users in scope: only these are created, updated or persisted
    filtered_out: int  # source users read but outside the selected groups
    missing_groups: list[str]  # selected group ids the source no longer lists
    suppressed: int = 0  # in-scope users left out because the tenant suppresses them (tasks/suppress.py)


def filter_users(
    users: pl.DataFrame,
    flat_memberships: pl.DataFrame,
    groups: pl.DataFrame,
    *,
    selected_group_ids: Sequence[str],
    all_users: bool,
) -> Scope:
    if all_users:
        return Scope(users=users, filtered_out=0, missing_groups=[])
    selected = pl.DataFrame({"group_id": list(selected_group_ids)}, schema={"group_id": pl.String()})
    members = flat_memberships.join(selected, on="group_id", how="semi").select("user_id").unique()
    in_scope = users.join(members, on="user_id", how="semi")
    known = set(groups.get_column("group_id").to_list())
    missing = sorted(g for g in selected_group_ids if g not in known)
    return Scope(users=in_scope, filtered_out=users.height - in_scope.height, missing_groups=missing)


filter_task = task(name="filter by selected groups", cache_policy=NO_CACHE, persist_result=False)(filter_users)
