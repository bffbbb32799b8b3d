"""Flatten nested groups: a member of a child group is a member of every ancestor (cycle-safe)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE


@dataclass(frozen=True)
class FlatGroups:
    memberships: pl.DataFrame  # (group_id, user_id): direct or inherited, each pair once
    groups: pl.DataFrame  # (group_id, name, parent_id, member_count): every known group once


def ancestry(groups: pl.DataFrame, memberships: pl.DataFrame) -> pl.DataFrame:
    """(group_id, ancestor_id) for every group and each of its ancestors, itself included.

    Grows the closure one parent level per join until it stops growing, so a cycle ends the loop
    instead of running it forever, and a parent nobody lists is kept as a plain id.
    """
    ids = pl.concat([groups.select("group_id"), memberships.select("group_id")]).unique()
    closure = ids.with_columns(ancestor_id=pl.col("group_id"))
    edges = (
        groups.filter(pl.col("parent_id").is_not_null())
        .select(child=pl.col("group_id"), parent=pl.col("parent_id"))
        .unique()
    )
    while True:
        step = closure.join(edges, left_on="ancestor_id", right_on="child", how="inner").select(
            "group_id", ancestor_id=pl.col("parent")
        )
        grown = pl.concat([closure, step]).unique()
        if grown.height == closure.height:
            return closure
        closure = grown


def flatten(groups: pl.DataFrame, memberships: pl.DataFrame, users: pl.DataFrame) -> FlatGroups:
    """Transitive memberships, and the flat group list with member counts for the filter screen."""
    flat = (
        memberships.join(ancestry(groups, memberships), on="group_id", how="inner", validate="m:m")
        .select(group_id=pl.col("ancestor_id"), user_id=pl.col("user_id"))
        .unique()
    )
    known_users = users.select("user_id").drop_nulls().unique()
    counts = (
        flat.join(known_users, on="user_id", how="semi").group_by("group_id").agg(member_count=pl.len().cast(pl.Int64))
    )
    listed = groups.join(counts, on="group_id", how="left", validate="1:1").with_columns(
        pl.col("member_count").fill_null(0)
    )
    return FlatGroups(memberships=flat, groups=listed.sort("name", "group_id", nulls_last=True))


flatten_task = task(name="flatten groups", cache_policy=NO_CACHE, persist_result=False)(flatten)
