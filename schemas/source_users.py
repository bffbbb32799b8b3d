"""The contract a source user must meet before it may be matched to an employee."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from domain.ids import MAX_ID_LENGTH
from domain.names import CONTROL_CHARACTERS

# Deliberately loose: the edge already ran email-validator; this catches what slipped past a
# source-specific normalizer (spaces, several @, an empty side).
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class SourceUserSchema(pa.DataFrameModel):
    record: int = pa.Field(nullable=False)
    user_id: str = pa.Field(nullable=False, unique=True, str_length={"min_value": 1})
    email: str = pa.Field(nullable=False, str_matches=EMAIL_PATTERN)
    email_norm: str = pa.Field(nullable=False)
    first_name: str = pa.Field(nullable=True)
    last_name: str = pa.Field(nullable=True)
    display_name: str = pa.Field(nullable=True)
    employment_status: str = pa.Field(nullable=False, isin=["active", "inactive"])
    terminated_at: pl.Datetime(time_unit="us", time_zone="UTC") = pa.Field(nullable=True)  # type: ignore[valid-type]
    # The edge's own finding about a record; a set `problem` quarantines it with that reason.
    problem: str = pa.Field(nullable=True)

    @pa.check("problem", name="no_problem_at_the_edge")
    @classmethod
    def problem_is_null(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_null())

    class Config:
        strict = True
        coerce = False


# What a failed check means to an admin, by (column, check name).
REASONS: dict[tuple[str, str], str] = {
    ("user_id", "not_nullable"): "missing id",
    ("user_id", "field_uniqueness"): "duplicate id",
    ("user_id", "str_length"): "empty id",
    ("email", "not_nullable"): "no usable email",
    ("email", "str_matches"): "email is not a valid address",
    ("email_norm", "not_nullable"): "no usable email",
    ("employment_status", "not_nullable"): "missing employment_status",
    ("employment_status", "isin"): "unknown employment_status",
}


def usable_id(column: str) -> pl.Expr:
    """True where the column's id may be stored and shown (domain/ids.py's rules, for a whole column at once):
    no control character, at most MAX_ID_LENGTH characters. Null where the id is null."""
    ids = pl.col(column)
    return ~ids.str.contains(CONTROL_CHARACTERS) & (ids.str.len_chars() <= MAX_ID_LENGTH)
