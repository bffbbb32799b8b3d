"""Unified.to HRIS payloads -> the normalized source frames of `sources.model` (the edge of the pipeline).

Each record is read through a frozen pydantic model with `extra="ignore"`: every field the pipeline
does not need (birthdays, phones, titles, ...) is dropped here, on purpose, before anything is logged
or stored. A record that cannot be used is kept as a row with a `problem` (never a crash), so that
reports can name it by source id or position; problems never quote the personal value itself.

A listing is read page by page as it arrives (`read_user_page`, `read_group_page`: the fields kept, in columns;
the raw page can go at once), runs of pages become frames (`user_block`, `group_block`), and the checks that
apply to every row run once over all of them (`normalize_blocks`). `normalize` does the same with listings
already whole; the frames do not depend on how a listing was paged.

Email syntax is checked with `email-validator` (no DNS). It costs ~45 µs per address, too slow for
100k users, so a conservative regex first accepts the plain addresses it is sure email-validator
accepts too (a property test holds it to that); everything else goes through email-validator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import BaseModel, ConfigDict, ValidationError

from domain.emails import EMAIL_HAS_COMPATIBILITY_CHARACTERS, email_problem, is_valid_email, normalize_email
from domain.ids import id_problem
from domain.names import CONTROL_CHARACTERS, MAX_NAME_LENGTH, NAME_HAS_CONTROL_CHARACTERS, NAME_TOO_LONG
from schemas.source_users import usable_id
from sources.model import GROUP_SCHEMA, GROUPS_LISTED, MEMBERSHIP_SCHEMA, USER_SCHEMA, SourceSnapshot

# Problems, as they appear in reports. They identify nothing personal.
MISSING_ID = "missing id"
ID_NOT_STRING = "id is not a string"
NOT_AN_OBJECT = "record is not an object"
NO_EMAIL = "no work or other email"
INVALID_EMAIL = "email is not a valid address"
# The name rules are domain/names.py's, shared with employees created by hand.
CONTROL_CHARS = NAME_HAS_CONTROL_CHARACTERS
UNKNOWN_STATUS = "unknown employment_status"
UNREADABLE_END_DATE = "terminated_at is not a date"


def wrong_type(field: str) -> str:
    return f"{field} has the wrong type"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class HrisEmail(_Record):
    email: str | None = None
    type: str | None = None


class HrisGroupRef(_Record):
    """An entry of `employee.groups[]`: a membership, and the group's name and type where the source lists no
    groups of its own (Personio's departments, teams and offices arrive only here)."""

    id: str | None = None
    name: str | None = None
    type: str | None = None


class HrisEmployee(_Record):
    """The subset of Unified's HrisEmployee the pipeline may keep."""

    id: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    emails: list[HrisEmail] | None = None
    employment_status: str | None = None
    terminated_at: str | None = None
    groups: list[HrisGroupRef] | None = None


class HrisGroup(_Record):
    """The subset of Unified's HrisGroup the pipeline may keep."""

    id: str | None = None
    name: str | None = None
    type: str | None = None
    parent_id: str | None = None
    user_ids: list[Any] | None = None  # non-string entries are skipped, not fatal


# ---- emails -----------------------------------------------------------------------------------

# Addresses this matches are plain ASCII dot-atoms at a dotted, alphabetic-TLD hostname: email-validator
# accepts all of them (given the length and special-use checks in `plain_email`). It deliberately
# leaves out "--" (punycode labels) and everything unusual, which then goes to email-validator.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9_+'-]+(?:\.[A-Za-z0-9_+'-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# Special-use names (test, invalid, localhost, ...) are single labels, so checking the TLD is enough; a
# name with a dot (a future email-validator release) is checked against the whole domain instead.
_SPECIAL_USE_TLDS = [d for d in SPECIAL_USE_DOMAIN_NAMES if "." not in d]
_SPECIAL_USE_SUFFIXES = [d for d in SPECIAL_USE_DOMAIN_NAMES if "." in d]


def pick_email(emails: Sequence[HrisEmail] | None) -> str | None:
    """The first WORK address, else the first OTHER (or untyped) one, trimmed. HOME is never used."""
    other: str | None = None
    for entry in emails or ():
        address = entry.email.strip() if entry.email else ""
        if not address:
            continue
        kind = entry.type.strip().upper() if entry.type else "OTHER"
        if kind == "WORK":
            return address
        if kind == "OTHER" and other is None:
            other = address
        # HOME, and any unknown type (which may be private too), is never used
    return other


# ---- names ------------------------------------------------------------------------------------

# C0 and C1 control characters: never stored in a name (domain/names.py).
_CONTROL_PATTERN = CONTROL_CHARACTERS
_CONTROL = re.compile(_CONTROL_PATTERN)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def end_date(value: str) -> datetime | None:
    """An ISO-8601 date or date-time as a UTC instant (a date alone is its midnight, a time without a zone is
    UTC), or None when it is not one."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# ---- employees --------------------------------------------------------------------------------


def _read_employee(raw: dict[str, Any], problems: list[str]) -> HrisEmployee:
    try:
        return HrisEmployee.model_validate(raw)
    except ValidationError as exc:
        bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    for field in sorted(bad):
        problems.append(ID_NOT_STRING if field == "id" else wrong_type(field))
    # Every field is optional: without the mistyped ones the record reads.
    return HrisEmployee.model_validate({k: v for k, v in raw.items() if k not in bad})


@dataclass(frozen=True)
class UserPage:
    """One page of employees as `read_user_page` leaves it: what is kept of each record, in columns of the values
    read (the page's raw records can go at once); `user_block` makes frames of a run of pages."""

    start: int  # the position of the page's first record in the listing
    columns: dict[str, list[Any]]  # the _READ_SCHEMA columns but `record`, one value per record
    membership_groups: list[str]  # the page's `groups[]` entries of records with an id, in order ...
    membership_users: list[str]  # ... and the user each names
    embedded: dict[str, tuple[str | None, str | None]]  # group id -> (name, type) of its first describing entry


@dataclass(frozen=True)
class UserBlock:
    """Pages of employees that follow one another, in frames (`user_block`); `users_from_blocks` checks them."""

    users: pl.DataFrame  # _READ_SCHEMA: one row per record, the fields read, before the checks on every row
    memberships: pl.DataFrame  # MEMBERSHIP_SCHEMA, in record order
    embedded: dict[str, tuple[str | None, str | None]]  # group id -> (name, type) of its first describing entry


# The columns a page is read into: USER_SCHEMA's, less those the checks on the whole frame derive.
_READ_SCHEMA: dict[str, pl.DataType] = {
    **{k: v for k, v in USER_SCHEMA.items() if k not in ("email_norm", "display_name", "problem")},
    "full_name": pl.String(),
    "read_problem": pl.String(),
}


def read_user_page(start: int, raw_employees: Sequence[Any]) -> UserPage:
    """A page of raw employees whose first record stands at position `start` of the listing, read.

    The per-record loop only reads each record through `HrisEmployee` and picks its email; the checks that
    apply to every row (names, status, email syntax) run once, as polars expressions over all pages
    (`users_from_blocks`). Pure: pages may be read on several threads at once. No frame per page: a frame of
    100 rows costs several times its share of a larger one (a buffer per string column), hence `user_block`.
    """
    n = len(raw_employees)
    user_ids: list[str | None] = [None] * n
    emails: list[str | None] = [None] * n
    first_names: list[str | None] = [None] * n
    last_names: list[str | None] = [None] * n
    full_names: list[str | None] = [None] * n
    statuses: list[str | None] = [None] * n
    ended: list[datetime | None] = [None] * n
    read_problems: list[str | None] = [None] * n
    m_groups: list[str] = []
    m_users: list[str] = []
    embedded: dict[str, tuple[str | None, str | None]] = {}  # group id -> (name, type), the first seen

    for i, raw in enumerate(raw_employees):
        if not isinstance(raw, dict):
            read_problems[i] = NOT_AN_OBJECT
            continue
        problems: list[str] = []
        emp = _read_employee(raw, problems)

        user_id = emp.id
        if user_id is None or not user_id.strip():
            if ID_NOT_STRING not in problems:
                problems.append(MISSING_ID)
            user_id = None
        elif (bad_id := id_problem(user_id)) is not None:
            # Quarantined, yet kept as the row's id: it still names the user's memberships (scope) and the
            # employee a link to it holds back. validate.py reports such a user by position, not by the id.
            problems.append(bad_id)
        user_ids[i] = user_id

        address = pick_email(emp.emails)
        if address is None:
            problems.append(NO_EMAIL)
        emails[i] = address
        # Trimmed, emptied and lower-cased as columns below (_tidy).
        first_names[i], last_names[i], full_names[i] = emp.first_name, emp.last_name, emp.name
        # Missing means active: Unified omits it for sources that only list current staff.
        statuses[i] = "active" if emp.employment_status is None else emp.employment_status
        if emp.terminated_at is not None and emp.terminated_at.strip():
            ended[i] = end_date(emp.terminated_at)
            if ended[i] is None:
                problems.append(UNREADABLE_END_DATE)

        for ref in emp.groups or ():
            if ref.id and ref.id.strip():
                if ref.id not in embedded or embedded[ref.id] == (None, None):
                    embedded[ref.id] = (ref.name, ref.type)
                if user_id is not None:
                    m_groups.append(ref.id)
                    m_users.append(user_id)
        if problems:
            read_problems[i] = "; ".join(problems)

    columns: dict[str, list[Any]] = {
        "user_id": user_ids,
        "email": emails,
        "first_name": first_names,
        "last_name": last_names,
        "full_name": full_names,
        "employment_status": statuses,
        "terminated_at": ended,
        "read_problem": read_problems,
    }
    return UserPage(start, columns, m_groups, m_users, embedded)


def _first_descriptions(
    described: Iterable[dict[str, tuple[str | None, str | None]]],
) -> dict[str, tuple[str | None, str | None]]:
    """Group id -> (name, type) of pages' (or blocks') `embedded`, in listing order, by the rule a page applies to
    its entries: the first entry that gives a name or a type describes the group (else the first entry)."""
    embedded: dict[str, tuple[str | None, str | None]] = {}
    for each in described:
        for group_id, name_and_type in each.items():
            if group_id not in embedded or embedded[group_id] == (None, None):
                embedded[group_id] = name_and_type
    return embedded


def user_block(pages: Sequence[UserPage]) -> UserBlock:
    """Pages that follow one another (in listing order) in frames: what one page of all their records gives."""
    records = [position for page in pages for position in range(page.start, page.start + len(page.columns["user_id"]))]
    users = pl.DataFrame(
        {
            "record": pl.Series(records, dtype=pl.Int64()),
            **{
                name: [value for page in pages for value in page.columns[name]]
                for name in _READ_SCHEMA
                if name != "record"
            },
        },
        schema=_READ_SCHEMA,
    )
    memberships = pl.DataFrame(
        {
            "group_id": [group for page in pages for group in page.membership_groups],
            "user_id": [user for page in pages for user in page.membership_users],
        },
        schema=MEMBERSHIP_SCHEMA,
    )
    return UserBlock(users, memberships, _first_descriptions(page.embedded for page in pages))


def users_from_blocks(blocks: Sequence[UserBlock]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The users frame (USER_SCHEMA), the memberships stated on employees (`employee.groups[]`), and the groups
    those entries describe (GROUP_SCHEMA without parents: one row per id, its first name and type seen), of
    a listing read in blocks of pages (`user_block`, blocks in listing order).

    The same frames whatever the blocks: the checks on every row run here, once, over all of them.
    """
    if blocks:
        frame = pl.concat([block.users for block in blocks], rechunk=True)
        memberships = pl.concat([block.memberships for block in blocks], rechunk=True)
    else:
        frame, memberships = pl.DataFrame(schema=_READ_SCHEMA), pl.DataFrame(schema=MEMBERSHIP_SCHEMA)
    embedded = _first_descriptions(block.embedded for block in blocks)
    return (
        _check_users(_tidy(frame)),
        memberships,
        _group_frame(
            list(embedded),
            [name for name, _ in embedded.values()],
            [None] * len(embedded),
            [t for _, t in embedded.values()],
        ),
    )


def normalize_users(raw_employees: Sequence[Any]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """`users_from_blocks` of the whole listing read as one page."""
    return users_from_blocks([user_block([read_user_page(0, raw_employees)])])


# What Python's str.strip() removes, i.e. every code point for which str.isspace() holds (polars' own
# default, Unicode White_Space, leaves \x1c-\x1f). Written out rather than scanned from all 1.1M code
# points at import; tests/test_normalize.py holds it to the scan.
_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _trimmed(column: str) -> pl.Expr:
    """The column as `_clean` leaves a value: stripped as str.strip() strips, and empty as null."""
    return pl.col(column).str.strip_chars(_WHITESPACE).replace("", None)


def _tidy(frame: pl.DataFrame) -> pl.DataFrame:
    """Names trimmed, status folded, the matching form of the email: for every row at once."""
    email = pl.col("email")
    ascii_email = email.str.contains(r"^[\x00-\x7f]*$")
    frame = frame.with_columns(
        _trimmed("first_name"),
        _trimmed("last_name"),
        _trimmed("full_name"),
        employment_status=pl.col("employment_status").str.strip_chars(_WHITESPACE).str.to_lowercase(),
        # ASCII addresses lower-cased here (what normalize_email does for them); the rest one by one.
        email_norm=pl.when(ascii_email).then(email.str.to_lowercase()),
    )
    others = frame.filter(email.is_not_null() & ~ascii_email).select("record", "email")
    if others.height:
        folded = pl.Series([normalize_email(e) for e in others["email"]], dtype=pl.String())
        frame = frame.with_columns(
            email_norm=pl.coalesce(
                pl.col("email_norm"), pl.col("record").replace_strict(others["record"], folded, default=None)
            )
        )
    return frame


def plain_email(email: pl.Expr) -> pl.Expr:
    """True where the address is plain enough that email-validator certainly accepts it (vectorized)."""
    return (
        email.str.contains(f"^{_PLAIN_EMAIL.pattern}$")
        & ~email.str.contains("--", literal=True)
        & (email.str.len_chars() <= 254)
        & (email.str.find("@", literal=True) <= 64)
        & ~email.str.extract(r"\.([A-Za-z]+)$").str.to_lowercase().is_in(_SPECIAL_USE_TLDS)
        & ~pl.any_horizontal(
            pl.lit(False),
            *(email.str.to_lowercase().str.contains(rf"[@.]{re.escape(d)}$") for d in _SPECIAL_USE_SUFFIXES),
        )
    )


def _problem_if(condition: pl.Expr, problem: str) -> pl.Expr:
    return pl.when(condition).then(pl.lit(problem))


def _check_users(frame: pl.DataFrame) -> pl.DataFrame:
    first, last = pl.col("first_name"), pl.col("last_name")
    frame = frame.with_columns(
        display_name=pl.coalesce(
            pl.col("full_name"),
            pl.concat_str([first, last], separator=" ", ignore_nulls=True).replace("", None),
        )
    )
    # Email syntax: the plain-address regex in polars; email-validator for whatever it does not vouch for.
    email = pl.col("email")
    plain = plain_email(email)
    unsure = frame.select(pl.col("record"), email, plain.alias("plain")).filter(email.is_not_null() & ~pl.col("plain"))
    invalid_records = [r for r, e in zip(unsure["record"], unsure["email"], strict=True) if not is_valid_email(e)]
    invalid = pl.col("record").is_in(invalid_records)
    # Look-alike characters in the local part (domain/emails.py): only a non-ASCII address can hold them.
    unicode = frame.filter(email.is_not_null() & ~email.str.contains(r"^[\x00-\x7f]*$")).select("record", "email")
    lookalike = pl.col("record").is_in(
        [r for r, e in zip(unicode["record"], unicode["email"], strict=True) if email_problem(e) is not None]
    )

    names = [first, last, pl.col("display_name")]
    control = pl.any_horizontal([c.str.contains(_CONTROL_PATTERN).fill_null(False) for c in names])
    too_long = pl.any_horizontal([(c.str.len_chars() > MAX_NAME_LENGTH).fill_null(False) for c in names])
    status = pl.col("employment_status")
    problem = pl.concat_str(
        [
            pl.col("read_problem"),
            _problem_if(invalid, INVALID_EMAIL),
            _problem_if(lookalike & ~invalid, EMAIL_HAS_COMPATIBILITY_CHARACTERS),
            _problem_if(control, CONTROL_CHARS),
            _problem_if(too_long, NAME_TOO_LONG),
            _problem_if(status.is_not_null() & ~status.is_in(["active", "inactive"]), UNKNOWN_STATUS),
        ],
        separator="; ",
        ignore_nulls=True,
    ).replace("", None)
    return frame.with_columns(
        problem=problem,
        email=pl.when(invalid).then(None).otherwise(email),
        email_norm=pl.when(invalid).then(None).otherwise(pl.col("email_norm")),
    ).select(list(USER_SCHEMA))


# ---- groups -----------------------------------------------------------------------------------


def _read_group(raw: dict[str, Any]) -> HrisGroup:
    try:
        return HrisGroup.model_validate(raw)
    except ValidationError as exc:
        bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    return HrisGroup.model_validate({k: v for k, v in raw.items() if k not in bad})


@dataclass(frozen=True)
class GroupPage:
    """One page of groups as `read_group_page` leaves it, so that its raw records (whose `user_ids` grow with
    the tenant) can go at once; `group_block` makes a frame of a run of pages' memberships."""

    # (position in the listing, id, name, parent id, type) of each record with a usable id, in order
    groups: list[tuple[int, str, str | None, str | None, str | None]]
    membership_positions: list[int]  # what those records' `user_ids` state, in order: the record's position,
    membership_groups: list[str]  # its group id ...
    membership_users: list[str]  # ... and the user


@dataclass(frozen=True)
class GroupBlock:
    """Pages of groups that follow one another (`group_block`); `groups_from_blocks` makes the frames."""

    groups: list[tuple[int, str, str | None, str | None, str | None]]  # as GroupPage.groups
    memberships: pl.DataFrame  # (position, group_id, user_id), in order


_POSITIONED_MEMBERSHIP_SCHEMA: dict[str, pl.DataType] = {"position": pl.Int64(), **MEMBERSHIP_SCHEMA}


def read_group_page(start: int, raw_groups: Sequence[Any]) -> GroupPage:
    """A page of raw groups whose first record stands at position `start` of the listing, read. Pure."""
    page = GroupPage([], [], [], [])
    for position, raw in enumerate(raw_groups, start):
        if not isinstance(raw, dict):
            continue
        group = _read_group(raw)
        if not group.id or not group.id.strip():
            continue  # no usable id: nothing could ever select it
        parent = group.parent_id if group.parent_id and group.parent_id.strip() else None
        page.groups.append((position, group.id, group.name, parent, group.type))
        for uid in group.user_ids or ():
            if isinstance(uid, str) and uid.strip():
                page.membership_positions.append(position)
                page.membership_groups.append(group.id)
                page.membership_users.append(uid)
    return page


def group_block(pages: Sequence[GroupPage]) -> GroupBlock:
    """Pages of groups that follow one another (in listing order), their memberships in a frame."""
    memberships = pl.DataFrame(
        {
            "position": [position for page in pages for position in page.membership_positions],
            "group_id": [group for page in pages for group in page.membership_groups],
            "user_id": [user for page in pages for user in page.membership_users],
        },
        schema=_POSITIONED_MEMBERSHIP_SCHEMA,
    )
    return GroupBlock([group for page in pages for group in page.groups], memberships)


def groups_from_blocks(blocks: Sequence[GroupBlock]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The groups frame (GROUP_SCHEMA) and the memberships stated on groups (`group.user_ids`), of a listing
    read in blocks of pages (`group_block`, blocks in listing order). A repeated id keeps its first record, and
    only that record's memberships."""
    seen: set[str] = set()
    repeated: list[int] = []  # positions of records whose id an earlier record has
    ids: list[str] = []
    names: list[str | None] = []
    parents: list[str | None] = []
    types: list[str | None] = []
    for block in blocks:
        for position, group_id, name, parent, kind in block.groups:
            if group_id in seen:
                repeated.append(position)
                continue
            seen.add(group_id)
            ids.append(group_id)
            # Group names have no problem column; control characters are removed rather than stored.
            names.append(name)
            parents.append(parent)
            types.append(kind)
    stated = (
        pl.concat([block.memberships for block in blocks], rechunk=True)
        if blocks
        else pl.DataFrame(schema=_POSITIONED_MEMBERSHIP_SCHEMA)
    )
    if repeated:
        stated = stated.filter(~pl.col("position").is_in(repeated))
    return _group_frame(ids, names, parents, types), stated.select(list(MEMBERSHIP_SCHEMA))


def normalize_groups(raw_groups: Sequence[Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`groups_from_blocks` of the whole listing read as one page."""
    return groups_from_blocks([group_block([read_group_page(0, raw_groups)])])


def _group_frame(
    ids: list[str], names: list[str | None], parents: list[str | None], types: list[str | None]
) -> pl.DataFrame:
    """GROUP_SCHEMA rows. Group names have no problem column: control characters are removed rather than
    stored; a type is trimmed and upper-cased (Unified's enum spelling), an empty one is none."""
    return pl.DataFrame(
        {
            "group_id": ids,
            "name": [_clean(_CONTROL.sub("", name)) if name else None for name in names],
            "parent_id": parents,
            "type": [_clean(_CONTROL.sub("", kind).upper()) if kind else None for kind in types],
        },
        schema=GROUP_SCHEMA,
    )


def group_union(listed: pl.DataFrame, embedded: pl.DataFrame) -> pl.DataFrame:
    """One row per group id, listed or only embedded in employees' `groups[]`: the listed group's name, type and
    parent win; what the listing leaves empty (a name, a type) comes from the embedded entry."""
    # In a stable order (the listed groups as listed, then those only embedded as first named): a full join
    # otherwise orders the unmatched rows as its threads happen to finish.
    both = listed.join(
        embedded, on="group_id", how="full", coalesce=True, suffix="_embedded", maintain_order="left_right"
    )
    return both.select(
        "group_id",
        name=pl.coalesce("name", "name_embedded"),
        parent_id=pl.col("parent_id"),
        type=pl.coalesce("type", "type_embedded"),
    )


def _without_unusable_group_ids(
    groups: pl.DataFrame, memberships: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Groups whose id breaks the id rules (domain/ids.py) dropped, with their memberships; such a parent id
    dropped (the group is then a root, as under a parent nobody lists); and how many such ids there were
    (counted, never shown: they are what a broken or hostile source sends)."""
    unusable = pl.concat(
        [groups.get_column("group_id"), groups.get_column("parent_id"), memberships.get_column("group_id")]
    ).drop_nulls()
    ignored = unusable.to_frame("id").filter(~usable_id("id")).get_column("id").n_unique()
    if not ignored:
        return groups, memberships, 0
    groups = groups.filter(usable_id("group_id")).with_columns(
        parent_id=pl.when(usable_id("parent_id")).then(pl.col("parent_id"))
    )
    return groups, memberships.filter(usable_id("group_id")), ignored


def normalize(
    raw_employees: Sequence[Any], raw_groups: Sequence[Any], *, group_source: str = GROUPS_LISTED
) -> SourceSnapshot:
    """Raw Unified.to employees and groups -> users, memberships and groups frames (`normalize_blocks` of each
    listing read as one page)."""
    return normalize_blocks(
        [user_block([read_user_page(0, raw_employees)])],
        [group_block([read_group_page(0, raw_groups)])],
        group_source=group_source,
    )


def normalize_blocks(
    user_blocks: Sequence[UserBlock], group_blocks: Sequence[GroupBlock], *, group_source: str = GROUPS_LISTED
) -> SourceSnapshot:
    """Listings read in blocks of pages (`user_block`, `group_block`) -> users, memberships and groups frames.

    The groups are the union of the listed ones and those only named in employees' `groups[]` (`group_union`);
    `group_source` says whether a group listing was read at all (SourceSnapshot.group_source)."""
    users, emp_memberships, embedded = users_from_blocks(user_blocks)
    listed, group_memberships = groups_from_blocks(group_blocks)
    memberships = pl.concat([group_memberships, emp_memberships]).unique(maintain_order=True)
    groups, memberships, ignored = _without_unusable_group_ids(group_union(listed, embedded), memberships)
    return SourceSnapshot(
        users=users, memberships=memberships, groups=groups, ignored_group_ids=ignored, group_source=group_source
    )
