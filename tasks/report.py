"""Count a run's outcomes and publish its receipt: a table artifact and a markdown summary per tenant.

Every count is derived from the plan's per-employee outcome records, never kept separately. The
artifacts name source users by source id only: no names or emails leave the employee database.
"""

from __future__ import annotations

import re

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

COUNTED_ACTIONS = ["created", "linked", "updated", "unchanged", "non_matching", "terminated", "reactivated"]
COUNT_KEYS = [
    "fetched",
    *COUNTED_ACTIONS,
    "skipped_inactive",
    "filtered_out",
    "invalid",
    "conflicts",
]


def count(plan: pl.DataFrame, *, fetched: int, filtered_out: int, invalid: int) -> dict[str, int]:
    by_action = dict(plan.group_by("action").len().iter_rows())
    counts = {"fetched": fetched, "filtered_out": filtered_out, "invalid": invalid}
    for action in [*COUNTED_ACTIONS, "skipped_inactive"]:
        counts[action] = int(by_action.get(action, 0))
    counts["conflicts"] = int(by_action.get("conflict", 0))
    return {key: counts[key] for key in COUNT_KEYS}


def totals(plan: pl.DataFrame) -> dict[str, int]:
    """The tenant's employees per status once the plan is applied (what a dry run would leave)."""
    final = plan.filter(pl.col("employee_id").is_not_null() | (pl.col("action") == "created"))
    return {str(k): int(v) for k, v in final.group_by("new_status").len().sort("new_status").iter_rows()}


def artifact_key(tenant: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "sync-" + (re.sub(r"[^a-z0-9-]+", "-", tenant.lower()).strip("-") or "tenant")


def summary_markdown(
    *,
    tenant: str,
    outcome: str,
    counts: dict[str, int],
    quarantine: pl.DataFrame,
    plan: pl.DataFrame,
    missing_groups: list[str],
    note: str | None = None,
    limit: int = 200,
) -> str:
    lines = [f"# Sync of tenant `{tenant}`: {outcome}", ""]
    if note:
        lines += [note, ""]
    lines += ["| count | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in counts.items()], ""]
    if missing_groups:
        lines += [f"Selected groups the source no longer lists: {', '.join(missing_groups)}", ""]
    if quarantine.height:
        lines += ["## Invalid source users (quarantined)", "", "| source user id | record | reason |", "|---|---|---|"]
        for row in quarantine.head(limit).iter_rows(named=True):
            lines.append(f"| {row['source_user_id'] or '(none)'} | {row['record']} | {row['reason']} |")
        if quarantine.height > limit:
            lines.append(f"| ... | | {quarantine.height - limit} more |")
        lines.append("")
    conflicts = plan.filter(pl.col("action") == "conflict")
    if conflicts.height:
        lines += ["## Conflicts (not applied)", "", "| source user id | employee id | reason |", "|---|---|---|"]
        for row in conflicts.head(limit).iter_rows(named=True):
            lines.append(f"| {row['source_user_id']} | {row['employee_id'] or ''} | {row['reason']} |")
        if conflicts.height > limit:
            lines.append(f"| ... | | {conflicts.height - limit} more |")
        lines.append("")
    if outcome == "stopped_by_guard":
        lines += _would_flag(plan, limit)
    return "\n".join(lines)


def _would_flag(plan: pl.DataFrame, limit: int) -> list[str]:
    """What a run stopped by the guard would have flagged, by employee id and source user id only."""
    flagged = plan.filter(pl.col("action").is_in(["non_matching", "terminated"])).sort("employee_id")
    lines = [
        "## Would have flagged (not applied)",
        "",
        "| employee id | source user id | would become |",
        "|---|---|---|",
    ]
    for row in flagged.head(limit).iter_rows(named=True):
        lines.append(f"| {row['employee_id']} | {row['source_user_id'] or ''} | {row['new_status']} |")
    if flagged.height > limit:
        lines.append(f"| ... | | {flagged.height - limit} more |")
    return [*lines, ""]


STAGES = ["extract", "flatten", "filter", "validate", "match", "load", "report"]


def failure_markdown(*, tenant: str, run_id: str, stage: str, reason: str) -> str:
    """What a failed run did not do, for the summary artifact: a failure before the load changed nothing."""
    lines = [f"# Sync of tenant `{tenant}` failed in stage {stage}", "", reason, ""]
    if stage == "report":
        lines.append(
            f"The employee changes were applied (`provision run show {run_id}` lists them); "
            "only publishing this run's counts did not happen."
        )
    else:
        not_done = STAGES[STAGES.index(stage) + 1 :] if stage in STAGES else ["load", "report"]
        lines.append(
            "Nothing was changed: no employee was created, updated or flagged, and the employee table is as it "
            f"was before the run. Not done: {', '.join(not_done)}."
        )
    return "\n".join(lines)


def publish(tenant: str, counts: dict[str, int], markdown: str) -> None:
    key = artifact_key(tenant)
    create_table_artifact(
        key=key,
        table=[{"count": k, "value": v} for k, v in counts.items()],
        description=f"Employee sync counts for tenant {tenant}",
    )
    create_markdown_artifact(key=f"{key}-summary", markdown=markdown, description=f"Sync summary for {tenant}")


@task(name="report", cache_policy=NO_CACHE, persist_result=False)
def report_task(tenant: str, counts: dict[str, int], markdown: str) -> None:
    publish(tenant, counts, markdown)
