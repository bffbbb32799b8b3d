"""The normalized source frames every source client produces: the only shapes that leave `sources/`.

Only the allowed attributes survive (design.md): user id, names, display name, employment status and end
date, email; group id, name, type and parent. Everything else is dropped while the payload is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# One row per source record as read, in the order read. `record` is the 0-based position in the
# listing, so a record without a usable id can still be named in a report. `problem` is null for a
# record the edge could read, else the reason it cannot be used (no usable email, unknown status, ...).
USER_SCHEMA: dict[str, pl.DataType] = {
    "record": pl.Int64(),
    "user_id": pl.String(),
    "email": pl.String(),  # the chosen address, trimmed, as the source spells it
    "email_norm": pl.String(),  # NFC + lower-case of `email` (domain/emails.py): what matching compares
    "first_name": pl.String(),
    "last_name": pl.String(),
    "display_name": pl.String(),
    "employment_status": pl.String(),  # "active" | "inactive", as the source says it (an end date is not applied here)
    "terminated_at": pl.Datetime("us", "UTC"),  # the end date the source gives (Personio's leavers), or null
    "problem": pl.String(),
}

# Direct memberships as the source states them (group.user_ids and employee.groups[]), deduplicated.
MEMBERSHIP_SCHEMA: dict[str, pl.DataType] = {"group_id": pl.String(), "user_id": pl.String()}

# One row per group id; `parent_id` is null for a root group. `type` is Unified's group type (DEPARTMENT, TEAM,
# BRANCH, GROUP, ...) as the source gives it, upper-cased, or null.
GROUP_SCHEMA: dict[str, pl.DataType] = {
    "group_id": pl.String(),
    "name": pl.String(),
    "parent_id": pl.String(),
    "type": pl.String(),
}

# How the groups were known: listed by the group endpoint (and completed by the employees' `groups[]`), or only
# from the employees' `groups[]` because the integration does not support the group endpoint (Personio).
GROUPS_LISTED = "listed"
GROUPS_EMBEDDED_ONLY = "embedded only"


@dataclass(frozen=True)
class SourceSnapshot:
    """Everything one extract read from a source."""

    users: pl.DataFrame
    memberships: pl.DataFrame
    groups: pl.DataFrame
    requests: int = 0  # requests sent to read it, retries and re-reads included (0: not read over HTTP)
    ignored_group_ids: int = 0  # group, parent and membership group ids breaking domain/ids.py's rules, ignored
    group_source: str = GROUPS_LISTED  # GROUPS_LISTED or GROUPS_EMBEDDED_ONLY
