"""Source ids are checked like names (issue 14, item 6): a source user whose id is longer than the columns hold
(200 characters) or holds a NUL byte or another control character is quarantined, a group with such an id is
dropped (and such a parent id or membership ignored), counted by number; and every id is escaped where it is
shown (the run's markdown summary, `provision run show`). On PostgreSQL one such id used to fail every load.
"""

from __future__ import annotations

import re

import polars as pl
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import pipeline.run
from domain.ids import ID_HAS_CONTROL_CHARACTERS, ID_TOO_LONG, MAX_ID_LENGTH, shown_id
from pipeline import Selection, plan_snapshot
from schemas.employees import EMPLOYEE_SCHEMA
from sources.normalize import normalize
from store.models import RunChange, SourceGroup
from store.repo import add_tenant, start_run
from tasks.report import summary_markdown
from tests.frames import employee, employees
from tests.runs import ALL_USERS, against, sync_snapshot
from tests.wire import group, person

GOOD = [person(f"g{i}", f"good{i}@acme.example") for i in range(6)]
LONG_ID = "u" * (MAX_ID_LENGTH + 1)
BAD_USER_IDS = {
    "too long": (LONG_ID, ID_TOO_LONG),
    "NUL byte": ("u\x00nul", ID_HAS_CONTROL_CHARACTERS),
    "escape sequence": ("\x1b[2Ju-esc", ID_HAS_CONTROL_CHARACTERS),
    "line break": ("u\nnewline", ID_HAS_CONTROL_CHARACTERS),
}


# ---- source users ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(BAD_USER_IDS))
def test_a_source_user_with_an_unusable_id_is_quarantined_and_reported_by_position(case: str) -> None:
    bad_id, reason = BAD_USER_IDS[case]
    source = [*GOOD, person(bad_id, "bad@acme.example")]
    planned = plan_snapshot(
        "acme", normalize(source, []), ALL_USERS, stages=against(pl.DataFrame(schema=EMPLOYEE_SCHEMA))
    )
    assert planned.quarantine.rows(named=True) == [{"record": 6, "source_user_id": None, "reason": reason}]
    assert planned.counts["created"] == 6


def test_an_id_of_exactly_200_characters_is_an_id() -> None:
    source = [*GOOD, person("u" * MAX_ID_LENGTH, "fits@acme.example")]
    planned = plan_snapshot(
        "acme", normalize(source, []), ALL_USERS, stages=against(pl.DataFrame(schema=EMPLOYEE_SCHEMA))
    )
    assert planned.quarantine.is_empty() and planned.counts["created"] == 7


def test_a_user_with_an_unusable_id_in_a_selected_group_is_quarantined_not_filtered_out() -> None:
    # why: the id still names the user's memberships, so scope is judged as for anyone else
    source = [*GOOD, person("u\x00nul", "bad@acme.example")]
    groups = [group("g", "G", [p["id"] for p in source])]
    planned = plan_snapshot(
        "acme",
        normalize(source, groups),
        Selection(group_ids=("g",)),
        stages=against(pl.DataFrame(schema=EMPLOYEE_SCHEMA)),
    )
    assert planned.counts["invalid"] == 1 and planned.counts["filtered_out"] == 0


def test_an_employee_linked_to_an_unusable_id_is_kept_as_it_is() -> None:
    # why: SQLite stored such links before ids were checked; the employee must not be flagged for it
    legacy = employees(employee(1, "legacy@acme.example", link=LONG_ID, status="synced"))
    source = [*GOOD, person(LONG_ID, "legacy@acme.example")]
    planned = plan_snapshot("acme", normalize(source, []), ALL_USERS, stages=against(legacy))
    (row,) = planned.plan.filter(pl.col("employee_id") == 1).rows(named=True)
    assert row["action"] == "kept" and row["new_status"] == "synced"


# ---- groups -----------------------------------------------------------------------------------------


def test_groups_with_unusable_ids_are_dropped_and_counted_by_number() -> None:
    ids = [p["id"] for p in GOOD]
    groups = [
        group("ok", "Fine", ids),
        group(LONG_ID, "Too long", ids),
        group("g\x00", "NUL", ids),
        group("child", "Bad parent", ids[:2], parent="p\n1"),
    ]
    people = [*GOOD[:5], {**GOOD[5], "groups": [{"id": "ok"}, {"id": "g\x1b"}]}]
    snapshot = normalize(people, groups)
    assert snapshot.groups.rows() == [("ok", "Fine", None, "TEAM"), ("child", "Bad parent", None, "TEAM")]
    assert set(snapshot.memberships.get_column("group_id").unique()) == {"ok", "child"}
    assert snapshot.ignored_group_ids == 4  # two groups, one parent, one membership
    line = pipeline.run._extracted(snapshot)
    assert line.endswith("; 4 unusable group ids ignored")
    assert "\x00" not in line and "Too long" not in line


# ---- the load, on both databases ----------------------------------------------------------------------


def test_unusable_ids_never_reach_the_database_and_the_load_succeeds(engine: Engine) -> None:
    add_tenant(engine, "acme")
    source = [*GOOD, person(LONG_ID, "long@acme.example"), person("u\x00nul", "nul@acme.example")]
    groups = [group("g", "G", [p["id"] for p in source]), group("g\x00bad", "Bad", [GOOD[0]["id"]], parent=LONG_ID)]
    run_id, planned = sync_snapshot(engine, "acme", normalize(source, groups))
    assert planned.written is not None and planned.counts["invalid"] == 2
    with Session(engine) as session:
        invalid = session.execute(
            select(RunChange.source_user_id, RunChange.reason).where(
                RunChange.run_id == run_id, RunChange.action == "invalid"
            )
        ).all()
        stored = session.scalars(select(SourceGroup.group_id).where(SourceGroup.tenant_id == "acme")).all()
    assert sorted(invalid, key=str) == [(None, ID_HAS_CONTROL_CHARACTERS), (None, ID_TOO_LONG)]
    assert stored == ["g"]


# ---- where ids are shown ------------------------------------------------------------------------------


def _table_rows(markdown: str, title: str) -> list[str]:
    lines = markdown.split("\n")
    start = lines.index(f"## {title}") + 4  # title, blank line, header, separator
    return lines[start : lines.index("", start)]


def _cells(row: str) -> list[str]:
    """The cells of a markdown table row, splitting only at pipes that are not escaped."""
    return re.split(r"(?<!\\)\|", row)[1:-1]


def test_the_summary_escapes_ids_so_each_stays_in_its_cell() -> None:
    hostile = "a|b`c\nd\x1b[2J"  # (a legacy id, or a valid one with | and `)
    quarantine = pl.DataFrame(
        {"record": [3], "source_user_id": [hostile], "reason": ["duplicate id"]},
        schema={"record": pl.Int64(), "source_user_id": pl.String(), "reason": pl.String()},
    )
    plan = pl.DataFrame(
        {"action": ["conflict"], "source_user_id": ["x|y`z"], "employee_id": [7], "reason": ["email taken"]},
        schema_overrides={"employee_id": pl.Int64()},
    )
    markdown = summary_markdown(
        tenant="acme",
        outcome="succeeded",
        counts={"invalid": 1, "conflicts": 1},
        quarantine=quarantine,
        plan=plan,
        missing_groups=["g|1`\n"],
    )
    assert "\x1b" not in markdown
    (invalid_row,) = _table_rows(markdown, "Invalid source users (quarantined)")
    assert len(_cells(invalid_row)) == 3
    assert "`" not in invalid_row.replace("\\`", "")
    (conflict_row,) = _table_rows(markdown, "Conflicts (not applied)")
    assert [c.strip() for c in _cells(conflict_row)] == ["x\\|y\\`z", "7", "email taken"]
    missing = next(line for line in markdown.split("\n") if line.startswith("Selected groups"))
    assert missing == "Selected groups the source no longer lists: g\\|1\\`\\\\n"  # the escape's \\ escaped


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("u-1", "u-1"),
        ("Zoë", "Zoë"),
        ("u\x00nul", "u\\x00nul"),
        ("\x1b[2J", "\\x1b[2J"),
        ("a\nb", "a\\nb"),
        ("a\u0085b", "a\\x85b"),
        ("back\\slash", "back\\slash"),
        ("u" * 300, "u" * MAX_ID_LENGTH + "… (300 characters)"),
    ],
)
def test_an_id_is_shown_with_its_control_characters_escaped(value: str, shown: str) -> None:
    assert shown_id(value) == shown


def test_run_show_escapes_an_id_stored_before_ids_were_checked(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import app
    from store.db import make_engine

    monkeypatch.setenv("PROVISIONING_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    add_tenant(engine, "acme")
    run_id = start_run(engine, "acme", trigger="cli", parameters={}, flow_run_id=None, dry_run=False)
    with Session(engine) as session, session.begin():
        session.add(
            RunChange(
                run_id=run_id, seq=1, tenant_id="acme", source_user_id="\x1b[2Jevil\nline", action="invalid",
                reason="duplicate id",
            )
        )  # fmt: skip
    result = CliRunner().invoke(app, ["run", "show", run_id])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert result.output.count("\n") == 1
    assert "source user \\x1b[2Jevil\\nline" in result.output
