"""The employee frame the store hands to the match stage: one row per employee of the tenant."""

from __future__ import annotations

import polars as pl

EMPLOYEE_SCHEMA: dict[str, pl.DataType] = {
    "employee_id": pl.Int64(),
    "email": pl.String(),
    "email_norm": pl.String(),
    "first_name": pl.String(),
    "last_name": pl.String(),
    "display_name": pl.String(),
    "employment_status": pl.String(),
    "source_user_id": pl.String(),
    "status": pl.String(),
    "flagged_at": pl.Datetime("us", "UTC"),  # when a run first flagged it; null while synced or unmanaged
    "deactivated": pl.Boolean(),  # inactive for the platform (the deprovisioning policy)
    "leave_date": pl.String(),  # YYYY-MM-DD: the end date the source gives (a planned leave date while ahead)
}
