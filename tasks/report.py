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

from domain.ids import markdown_text
from tasks.match import FLAG_REASON_NAMES

COUNTED_ACTIONS = ["created", "linked", "updated", "unchanged", "non_matching", "terminated", "reactivated"]
COUNT_KEYS = [
    "fetched",
    *COUNTED_ACTIONS,
    "deactivated",  # made inactive for the platform by the policy (newly flagged ones included)
    "deleted",
    "joined",  # group memberships an employee gained (group sync)
    "left",
    "skipped_inactive",
    "filtered_out",
    "suppressed",  # in-scope source users left out because the tenant suppresses them (erased; never named)
    "invalid",
    "conflicts",
    # The employees this run flags, per reason (tasks/match.py, with_flag_reasons).
    *(f"flagged_{name}" for name in FLAG_REASON_NAMES.values()),
]


def count(
    plan: pl.DataFrame,
    *,
    fetched: int,
    filtered_out: int,
    invalid: int,
    memberships: pl.DataFrame | None = None,
    suppressed: int = 0,
) -> dict[str, int]:
    by_action = dict(plan.group_by("action").len().iter_rows())
    if memberships is not None:
        by_action.update(memberships.group_by("action").len().iter_rows())
    counts = {"fetched": fetched, "filtered_out": filtered_out, "invalid": invalid, "suppressed": suppressed}
    for action in [*COUNTED_ACTIONS, "skipped_inactive"]:
        counts[action] = int(by_action.get(action, 0))
    counts["conflicts"] = int(by_action.get("conflict", 0))
    counts["deleted"] = int(by_action.get("deleted", 0))
    counts["deactivated"] = plan.filter(newly_deactivated()).height
    counts["joined"], counts["left"] = int(by_action.get("joined", 0)), int(by_action.get("left", 0))
    by_reason = dict(flags_by_reason(plan).iter_rows())
    for reason, name in FLAG_REASON_NAMES.items():
        counts[f"flagged_{name}"] = int(by_reason.get(reason, 0))
    return {key: counts[key] for key in COUNT_KEYS}


def newly_deactivated() -> pl.Expr:
    """Plan rows of employees this run makes inactive for the platform."""
    return pl.col("new_deactivated").fill_null(False) & ~pl.col("old_deactivated").fill_null(False)


def totals(plan: pl.DataFrame) -> dict[str, int]:
    """The tenant's employees per status once the plan is applied (what a dry run would leave)."""
    kept = pl.col("employee_id").is_not_null() & (pl.col("action") != "deleted")
    final = plan.filter(kept | (pl.col("action") == "created"))
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
        shown = ", ".join(markdown_text(g) for g in missing_groups)  # ids are escaped wherever they are shown
        lines += [f"Selected groups the source no longer lists: {shown}", ""]
    lines += _section("Flagged, by reason", ["reason", "employees"], flags_by_reason(plan), limit)
    lines += _section(
        "Invalid source users (quarantined)",
        ["source user id", "record", "reason"],
        quarantine.select(pl.col("source_user_id").fill_null("(none)"), "record", "reason"),
        limit,
    )
    lines += _section(
        "Conflicts (not applied)",
        ["source user id", "employee id", "reason"],
        plan.filter(pl.col("action") == "conflict").select("source_user_id", "employee_id", "reason"),
        limit,
    )
    if outcome == "stopped_by_guard":
        lines += _would_flag(plan, limit)
    return "\n".join(lines)


def flags_by_reason(plan: pl.DataFrame) -> pl.DataFrame:
    """How many employees this run flags (non_matching or terminated) for each reason."""
    flagged = plan.filter(pl.col("action").is_in(["non_matching", "terminated"]))
    return flagged.group_by("reason").len().sort("reason").select("reason", employees="len")


def _would_flag(plan: pl.DataFrame, limit: int) -> list[str]:
    """What a run stopped by the guard would have flagged, deactivated or deleted, by employee id and source
    user id only."""
    hit = pl.col("action").is_in(["non_matching", "terminated", "deleted"]) | newly_deactivated()
    flagged = plan.filter(hit).sort("employee_id")
    return _section(
        "Would have flagged, deactivated or deleted (not applied)",
        ["employee id", "source user id", "would be", "why"],
        flagged.select(
            "employee_id",
            "source_user_id",
            pl.when(pl.col("action") == "deleted")
            .then(pl.lit("deleted"))
            .otherwise(
                pl.concat_str(
                    "new_status",
                    pl.when(newly_deactivated()).then(pl.lit("deactivated")),
                    separator=", ",
                    ignore_nulls=True,
                )
            ),
            "reason",
        ),
        limit,
    )


def _section(title: str, headers: list[str], rows: pl.DataFrame, limit: int) -> list[str]:
    """A markdown table of at most `limit` rows (nulls shown empty, every value escaped: a source id may hold
    `|`, a backtick or a line break), or nothing when there are no rows."""
    if rows.is_empty():
        return []
    lines = [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows.head(limit).iter_rows():
        lines.append("| " + " | ".join("" if v is None else markdown_text(v) for v in row) + " |")
    if rows.height > limit:
        lines.append(f"| ... |{' |' * (len(headers) - 2)} {rows.height - limit} more |")
    return [*lines, ""]


def failure_markdown(*, tenant: str, run_id: str, stage: str, reason: str, not_done: list[str]) -> str:
    """What a failed run did not do, for the summary artifact: a failure before the load changed nothing."""
    lines = [f"# Sync of tenant `{tenant}` failed in stage {stage}", "", reason, ""]
    if stage == "report":
        lines.append(
            f"The employee changes were applied (`provision run show {run_id}` lists them); "
            "only publishing this run's counts did not happen."
        )
    else:
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
