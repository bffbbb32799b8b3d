"""The contract of a match plan: one outcome per employee and per in-scope source user."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

ACTIONS = [
    "created",  # a new employee, linked
    "linked",  # an existing employee linked by email in this run
    "updated",  # a linked employee whose name, display name or email changed
    "unchanged",  # a matched employee with nothing to change
    "terminated",  # newly flagged terminated
    "non_matching",  # newly flagged non_matching
    "reactivated",  # terminated or non_matching, synced again
    "still_non_matching",  # already non_matching and still unmatched: nothing to write
    "kept",  # its source user is quarantined: kept exactly as it is
    "conflict",  # a change that would collide with another employee: not applied, listed
    "skipped_inactive",  # an inactive source user with no employee: not created
    "deactivated",  # already flagged, now inactive for the platform (the deprovisioning policy)
    "deleted",  # flagged for the policy's grace period: removed (its old values kept in the run's record)
]
WRITES = ["created", "linked", "updated", "terminated", "non_matching", "reactivated", "deactivated", "deleted"]
STATUSES = ["synced", "terminated", "non_matching", "unmanaged"]
FIELDS = ["email", "first_name", "last_name", "display_name", "status"]

# Group sync's changes in a run: one row per employee and group it joined or left (tasks/memberships.py).
MEMBERSHIP_CHANGE_SCHEMA: dict[str, pl.DataType] = {
    "employee_id": pl.Int64(),  # null for an employee this run creates (the load knows its id)
    "source_user_id": pl.String(),
    "group_id": pl.String(),
    "action": pl.String(),  # joined | left
}


class PlanSchema(pa.DataFrameModel):
    employee_id: int = pa.Field(nullable=True)
    source_user_id: str = pa.Field(nullable=True)
    action: str = pa.Field(nullable=False, isin=ACTIONS)
    reason: str = pa.Field(nullable=True)
    old_email: str = pa.Field(nullable=True)
    new_email: str = pa.Field(nullable=True)
    new_email_norm: str = pa.Field(nullable=True)
    old_first_name: str = pa.Field(nullable=True)
    new_first_name: str = pa.Field(nullable=True)
    old_last_name: str = pa.Field(nullable=True)
    new_last_name: str = pa.Field(nullable=True)
    old_display_name: str = pa.Field(nullable=True)
    new_display_name: str = pa.Field(nullable=True)
    old_status: str = pa.Field(nullable=True)
    new_status: str = pa.Field(nullable=True, isin=STATUSES)
    new_employment_status: str = pa.Field(nullable=True)
    changed_fields: str = pa.Field(nullable=True)
    flagged_at: pl.Datetime(time_unit="us", time_zone="UTC") = pa.Field(nullable=True)  # type: ignore[valid-type]
    old_deactivated: bool = pa.Field(nullable=True)
    new_deactivated: bool = pa.Field(nullable=True)
    old_leave_date: str = pa.Field(nullable=True)
    new_leave_date: str = pa.Field(nullable=True)

    @pa.dataframe_check(name="created rows are complete and linked")
    @classmethod
    def created_complete(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("action") != "created")
            | (
                pl.col("employee_id").is_null()
                & pl.col("source_user_id").is_not_null()
                & pl.col("new_email").is_not_null()
                & pl.col("new_email_norm").is_not_null()
                & (pl.col("new_status") == "synced")
            )
        )

    @pa.dataframe_check(name="existing employees keep their id")
    @classmethod
    def employee_rows_have_ids(cls, data: pa.PolarsData) -> pl.LazyFrame:
        employee_actions = [a for a in ACTIONS if a not in ("created", "skipped_inactive")]
        return data.lazyframe.select(
            ~pl.col("action").is_in(employee_actions)
            | pl.col("employee_id").is_not_null()
            | (pl.col("action") == "conflict")
        )

    @pa.dataframe_check(name="no two employees end with the same email")
    @classmethod
    def final_emails_unique(cls, data: pa.PolarsData) -> pl.LazyFrame:
        final = ~pl.col("action").is_in(["skipped_inactive", "deleted"])
        final &= ~((pl.col("action") == "conflict") & pl.col("employee_id").is_null())
        return data.lazyframe.select(~final | ~pl.col("new_email_norm").is_duplicated().over(final))

    @pa.dataframe_check(name="no two employees end with the same link")
    @classmethod
    def final_links_unique(cls, data: pa.PolarsData) -> pl.LazyFrame:
        final = (pl.col("employee_id").is_not_null() & (pl.col("action") != "deleted")) | (
            pl.col("action") == "created"
        )
        return data.lazyframe.select(
            ~final | pl.col("source_user_id").is_null() | ~pl.col("source_user_id").is_duplicated().over(final)
        )

    @pa.dataframe_check(name="only employees that end flagged are inactive for the platform")
    @classmethod
    def deactivated_only_when_flagged(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            ~pl.col("new_deactivated").fill_null(False) | pl.col("new_status").is_in(["non_matching", "terminated"])
        )

    @pa.dataframe_check(name="a deleted row names its employee and keeps no new values")
    @classmethod
    def deleted_rows_empty(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("action") != "deleted")
            | (pl.col("employee_id").is_not_null() & pl.col("new_status").is_null() & pl.col("new_email").is_null())
        )

    class Config:
        strict = True
