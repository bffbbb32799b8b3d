"""The bad-input catalog: malformed source payloads and what happens to each. Never a crash.

Each case is one bad record (or group) among nine good users, run through normalize -> flatten ->
filter -> validate -> match -> validate plan. The outcome is one of: quarantined with a reason (the
record is reported by source id and reason, never created or changed), tolerated (the run goes on and
the record is usable or harmless), or the run failed with a reason. A few cases also run through the
whole flow against the simulator, and a hypothesis fuzz holds the normalizer to the source-user schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from pipeline import Selection, plan_snapshot
from schemas.employees import EMPLOYEE_SCHEMA
from sources.normalize import normalize
from tasks.validate import MostlyInvalidError, validate_source_users
from tests.runs import ALL_USERS, against
from tests.strategies import employee_like, json_values
from tests.wire import group, person

GOOD = [person(f"g{i}", f"good{i}@acme.example", "Gut", f"Mensch{i}") for i in range(9)]
NO_EMPLOYEES = pl.DataFrame(schema=EMPLOYEE_SCHEMA)


@dataclass(frozen=True)
class Result:
    quarantine: dict[str | None, str]  # source user id (None when it had none) -> reason
    created: dict[str, dict[str, Any]]  # source user id -> plan row
    groups: pl.DataFrame  # the flat group list, with member counts
    in_scope: set[str]


def run(employees: list[Any], groups: list[Any] | None = None, selected: list[str] | None = None) -> Result:
    """The stages of a sync, as plain functions, against a tenant with no employees yet."""
    selection = ALL_USERS if selected is None else Selection(group_ids=tuple(selected))
    planned = plan_snapshot("acme", normalize(employees, groups or []), selection, stages=against(NO_EMPLOYEES))
    created = planned.plan.filter(pl.col("action") == "created")
    considered = pl.concat([planned.plan.get_column("source_user_id"), planned.quarantine.get_column("source_user_id")])
    return Result(
        quarantine=dict(planned.quarantine.select("source_user_id", "reason").iter_rows()),
        created={r["source_user_id"]: r for r in created.iter_rows(named=True)},
        groups=planned.groups,
        in_scope=set(considered.drop_nulls().to_list()),
    )


def bad(**fields: Any) -> dict[str, Any]:
    """A user `x` with some fields replaced (a value of ... removes the field)."""
    record = person("x", "x.person@acme.example", "Xaver", "Beispiel")
    for key, value in fields.items():
        if value is ...:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def work(address: Any) -> list[dict[str, Any]]:
    return [{"email": address, "type": "WORK"}]


Check = Callable[[Result], None]


def quarantined(reason: str, user_id: str | None = "x") -> Check:
    def check(result: Result) -> None:
        assert reason in result.quarantine[user_id]
        assert user_id not in result.created
        assert len(result.created) == 9  # the good users go on

    return check


def tolerated(**expect: Any) -> Check:
    def check(result: Result) -> None:
        assert result.quarantine == {}
        row = result.created["x"]
        for key, value in expect.items():
            assert row[f"new_{key}"] == value

    return check


def harmless(check_groups: Callable[[Result], None]) -> Check:
    def check(result: Result) -> None:
        assert result.quarantine == {}
        assert len(result.created) == 10
        check_groups(result)

    return check


def member_count(result: Result, group_id: str) -> int:
    return result.groups.filter(pl.col("group_id") == group_id).get_column("member_count").item()


LONG = "Ä" * 201
ALL = [p["id"] for p in GOOD] + ["x"]

# (name, employees, groups, selected groups or None for all users, outcome)
CATALOG: list[tuple[str, list[Any], list[Any], list[str] | None, Check]] = [
    ("missing id", [bad(id=...)], [], None, quarantined("missing id", None)),
    ("null id", [bad(id=None)], [], None, quarantined("missing id", None)),
    ("blank id", [bad(id="   ")], [], None, quarantined("missing id", None)),
    ("numeric id", [bad(id=4711)], [], None, quarantined("id is not a string", None)),
    ("id is an object", [bad(id={"value": "x"})], [], None, quarantined("id is not a string", None)),
    # why: the id columns hold 200 characters and PostgreSQL no NUL: reported by position, never stored
    ("id over 200 characters", [bad(id="x" * 201)], [], None, quarantined("id longer than 200 characters", None)),
    ("NUL byte in an id", [bad(id="x\x00")], [], None, quarantined("id contains control characters", None)),
    ("line break in an id", [bad(id="x\ny")], [], None, quarantined("id contains control characters", None)),
    ("email without @", [bad(emails=work("x.person.acme.example"))], [], None, quarantined("not a valid address")),
    ("spaces inside the email", [bad(emails=work("x person@acme.example"))], [], None,
     quarantined("not a valid address")),
    ("several @", [bad(emails=work("x@person@acme.example"))], [], None, quarantined("not a valid address")),
    # why: ſ, ﬃ and fullwidth letters read as another person's address (domain/emails.py)
    ("look-alike characters in the local part", [bad(emails=work("x.per\u017fon@acme.example"))], [], None,
     quarantined("look-alike characters before the @")),
    ("email without a dotted domain", [bad(emails=work("x@acme"))], [], None, quarantined("not a valid address")),
    ("only a HOME email", [bad(emails=[{"email": "x@home.example", "type": "HOME"}])], [], None,
     quarantined("no work or other email")),
    ("no emails at all", [bad(emails=...)], [], None, quarantined("no work or other email")),
    ("emails is a string", [bad(emails="x.person@acme.example")], [], None, quarantined("emails has the wrong type")),
    ("email entry is a number", [bad(emails=work(42))], [], None, quarantined("has the wrong type")),
    ("overlong last name", [bad(last_name=LONG)], [], None, quarantined("name longer than 200 characters")),
    ("control character in a name", [bad(first_name="Xa\x07ver")], [], None, quarantined("control characters")),
    ("NUL byte in a name", [bad(last_name="Bei\x00spiel")], [], None, quarantined("control characters")),
    ("unknown employment_status", [bad(employment_status="ON_LEAVE")], [], None,
     quarantined("unknown employment_status")),
    ("employment_status of the wrong type", [bad(employment_status=1)], [], None,
     quarantined("employment_status has the wrong type")),
    ("first_name of the wrong type", [bad(first_name=["Xaver"])], [], None,
     quarantined("first_name has the wrong type")),
    ("groups of the wrong type", [bad(groups="grp")], [], None, quarantined("groups has the wrong type")),
    ("record is not an object", ["x.person@acme.example"], [], None, quarantined("record is not an object", None)),
    ("duplicate id", [bad(), bad(emails=work("other@acme.example"))], [], None, quarantined("duplicate id")),
    ("right-to-left name", [bad(first_name="مريم", last_name="חיים")], [], None,
     tolerated(first_name="مريم", display_name="Xaver Beispiel")),
    ("bidi override in a name", [bad(name="\u202eresiaK")], [], None, tolerated(display_name="\u202eresiaK")),
    ("emoji in a name", [bad(first_name="Xaver 🚀")], [], None, tolerated(first_name="Xaver 🚀")),
    ("emoji in the email's local part", [bad(emails=work("🚀@acme.example"))], [], None,
     tolerated(email="🚀@acme.example")),
    ("email with spaces around it and capitals", [bad(emails=work("  X.Person@ACME.example "))], [], None,
     tolerated(email="X.Person@ACME.example", email_norm="x.person@acme.example")),
    ("missing employment_status (= active)", [bad(employment_status=...)], [], None, tolerated(status="synced")),
    ("unknown fields", [bad(ssn_sin="123", raw={"x": 1})], [], None, tolerated()),
    ("group naming unknown users", [bad()], [group("grp", "G", [*ALL, "ghost-1", "ghost-2"])], ["grp"],
     harmless(lambda r: (member_count(r, "grp") == 10) or pytest.fail("ghosts counted"))),
    ("group with an unknown parent", [bad()], [group("grp", "G", ALL, parent="nowhere")], ["grp"],
     harmless(lambda r: (r.in_scope == set(ALL)) or pytest.fail("scope lost"))),
    ("group cycle", [bad()], [group("a", "A", ["x"], parent="b"), group("b", "B", ALL[:9], parent="a")], ["a"],
     harmless(lambda r: (member_count(r, "a") == member_count(r, "b") == 10) or pytest.fail("cycle"))),
    ("group of 100k members", [bad()], [group("big", "Big", [f"m{i}" for i in range(100_000)] + ALL)], ["big"],
     harmless(lambda r: (member_count(r, "big") == 10) or pytest.fail("big group"))),
    ("group without an id", [bad()], [{"name": "no id", "user_ids": ["x"]}, group("g", "G", ALL)], ["g"],
     harmless(lambda r: (r.groups.height == 1) or pytest.fail("id-less group kept"))),
    ("group id with a NUL byte", [bad()], [group("g\x00", "Bad", ALL), group("g", "G", ALL)], ["g"],
     harmless(lambda r: (r.groups.get_column("group_id").to_list() == ["g"]) or pytest.fail("bad id kept"))),
    ("parent id over 200 characters", [bad()], [group("grp", "G", ALL, parent="p" * 201)], ["grp"],
     harmless(lambda r: (r.groups.get_column("parent_id").to_list() == [None]) or pytest.fail("bad parent kept"))),
    ("group user_ids of mixed types", [bad()], [group("g", "G", [*ALL, 5, None, {"id": "x"}])], ["g"],
     harmless(lambda r: (member_count(r, "g") == 10) or pytest.fail("mixed ids"))),
]  # fmt: skip


@pytest.mark.parametrize(("name", "employees", "groups", "selected", "check"), CATALOG, ids=[c[0] for c in CATALOG])
def test_each_bad_input_is_quarantined_or_tolerated_never_a_crash(
    name: str, employees: list[Any], groups: list[Any], selected: list[str] | None, check: Check
) -> None:
    check(run([*GOOD, *employees], groups, selected))


def test_the_catalog_holds_at_least_twenty_malformed_payloads() -> None:
    assert len(CATALOG) >= 20


def test_a_source_of_mostly_invalid_users_fails_the_run_with_its_reason() -> None:
    # why: more than half unusable means the source is broken, not that the people left
    broken = [person(f"b{i}", "not-an-address") for i in range(10)]
    with pytest.raises(MostlyInvalidError, match="10 of 19 source users in scope are unusable"):
        run([*GOOD, *broken])


def test_quarantine_reasons_never_quote_the_personal_value() -> None:
    result = run([*GOOD, bad(emails=work("x person@acme.example")), bad(id="y", last_name="Geheim\x00")])
    assert not any("acme.example" in r or "Geheim" in r for r in result.quarantine.values())


# ---- the normalizer against the schema (fuzz) -----------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(employees=st.lists(employee_like | json_values, max_size=8))
def test_every_fuzzed_record_either_passes_the_source_user_schema_or_is_quarantined(employees: list[Any]) -> None:
    users = normalize(employees, []).users
    try:
        validated = validate_source_users(users)
    except MostlyInvalidError:
        return  # a defined outcome: the run fails with its reason
    usable = set(validated.users.get_column("record").to_list())
    held = set(validated.quarantine.get_column("record").to_list())
    assert usable | held == set(range(len(employees)))
    assert not usable & held
    from schemas.source_users import SourceUserSchema

    SourceUserSchema.validate(validated.users)  # what goes on meets the contract in full


# ---- through the whole flow ----------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_api")
def test_bad_records_through_the_whole_flow_are_reported_and_the_rest_is_synced(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simulator import FaultPlan, SimulatorSource, create_app
    from simulator.serve import running_simulator
    from tests.tables import table
    from tests.upstreams import TOKEN, Upstream, setup_tenant, sync

    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    good = [person(f"g{i}", f"good{i}@acme.example", "Gut", f"Mensch{i}") for i in range(150)]
    bad_records = [
        bad(id=None),
        bad(id=4711),
        bad(id="sp", emails=work("s p@acme.example")),
        bad(id="nul", last_name="A\x00B"),
        bad(id="st", employment_status="ON_LEAVE"),
        "not an object",
        bad(id="rtl", first_name="مريم", emails=work("maryam@acme.example")),
        bad(id="g10", emails=work("second-g10@acme.example")),  # g10's id again, on another page
    ]
    people = [*good[:120], *bad_records, *good[120:]]
    ids = [p["id"] for p in people if isinstance(p, dict) and isinstance(p.get("id"), str)]
    data = {
        "employees": people,
        "groups": [group("g", "G", [*ids, "ghost"], parent="gone"), group("c1", "C1", [], parent="c2"),
                   group("c2", "C2", [], parent="c1")],
    }  # fmt: skip
    source = SimulatorSource(data)
    with running_simulator(create_app(source, connection_id="conn-1", token=TOKEN, faults=FaultPlan())) as url:
        upstream = Upstream(source, FaultPlan(), url)
        setup_tenant(engine, upstream, ["g"])
        result = sync()
    assert result["outcome"] == "succeeded"
    # why: records without a usable id cannot be members of a selected group: outside the scope, not invalid
    assert result["counts"]["filtered_out"] == 3
    assert result["counts"]["invalid"] == 5  # space, NUL, status, and both records of the duplicated g10
    rows = table(engine)
    assert rows["maryam@acme.example"][0] == "مريم"
    assert "good10@acme.example" not in rows and "second-g10@acme.example" not in rows
    assert len(rows) == 150 - 1 + 1  # the good ones but g10, plus the right-to-left one
