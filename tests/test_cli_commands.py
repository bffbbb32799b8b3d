"""The operator's `provision` command as a real process (issue 15, items 4, 6, 14 and 15): cron schedules
that would misfire are refused, hand-made employees obey a sync's name rules, usage mistakes are one
sentence and exit code 1, and `tenant list` / `tenant show` / `runs` say what a tenant's state is.

Every refusal: exit code 1, exactly one `Error: ...` line on stderr, no traceback, the database unchanged.
The rules themselves are also tested as plain functions (fast, no process).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import text

from admin.operations import create_employee
from api.problems import status_of
from domain.names import MAX_NAME_LENGTH, InvalidName, name_problem, person_name
from domain.schedules import MIN_INTERVAL_SECONDS, ScheduleError, checked, parse_every, shortest_cron_gap
from sources.normalize import normalize_users
from store.db import make_engine
from store.repo import (
    add_tenant,
    connect,
    finish_run,
    replace_groups,
    select_groups,
    set_guard,
    set_policy,
    start_run,
)
from store.schedules import set_schedule
from tests.processes import clean_env, run_provision
from tests.tables import db_state, rows_of

# ---- helpers ----------------------------------------------------------------------------------------


def provision(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`provision ARGS` as an operator runs it, on the database at `url`, with no Prefect server."""
    return run_provision(*args, env=clean_env(tmp_path) | {"PROVISIONING_DATABASE_URL": url})


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one sentence of a refusal (exit code 1, one `Error:` line on stderr, no traceback)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def refused_and_nothing_written(tmp_path: Path, url: str, *args: str) -> str:
    before = db_state(url)
    sentence = refused(provision(tmp_path, url, *args))
    assert db_state(url) == before
    return sentence


def connected(url: str, tenant: str = "acme") -> None:
    """A tenant connected without reading Unified.to (as `provision connect --no-check` saves it)."""
    engine = make_engine(url)
    add_tenant(engine, tenant, "ACME GmbH")
    connect(engine, tenant, provider="entra", connection_id=f"conn-{tenant}", base_url="https://api.unified.to")


# ---- item 4: cron schedules obey the interval's minimum and have five fields ------------------------


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("*/5 * * * *", 300),
        ("0 3 * * *", 86400),  # once a day: a day
        ("0 */2 * * *", 7200),
        ("0,59 0,23 * * 1", 3540),  # 23:59 and 00:00 are a minute apart, but Mondays never follow Mondays
        ("* * * * *", 60),
        ("*/4 * * * *", 240),
        ("0,2 3 * * *", 120),  # twice at three o'clock, once a day
        ("0,59 0,23 * * *", 60),  # 23:59 and then 00:00 the next day
        ("0,59 0,23 1,29 2,3 *", 60),  # 23:59 on Feb 29 and 00:00 on Mar 1: only in leap years
    ],
)
def test_the_shortest_gap_of_a_cron_string_counts_the_gap_across_midnight(cron: str, gap: int) -> None:
    assert shortest_cron_gap(cron) == gap


def test_cron_and_interval_share_one_minimum() -> None:
    assert parse_every("5m") == MIN_INTERVAL_SECONDS
    assert checked("*/5 * * * *", None, None).cron == "*/5 * * * *"
    for too_often_interval, too_often_cron in [("4m", "*/4 * * * *"), ("1m", "* * * * *")]:
        with pytest.raises(ScheduleError, match="the shortest is 5 min"):
            parse_every(too_often_interval)
        with pytest.raises(ScheduleError, match="the shortest interval is 5 min"):
            checked(too_often_cron, None, None)


@pytest.mark.parametrize("cron", ["0 0 3 * * *", "0 3 * *", "@daily", "0 3 * * * 2027"])
def test_a_cron_string_has_exactly_five_fields(cron: str) -> None:
    with pytest.raises(ScheduleError, match="five") as refusal:
        checked(cron, None, "Europe/Berlin")
    assert "\n" not in str(refusal.value)


@pytest.mark.slow  # the real process
def test_schedule_refuses_a_six_field_or_too_frequent_cron_as_it_refuses_a_short_interval(
    tmp_path: Path, sqlite_url: str
) -> None:
    connected(sqlite_url)
    six = refused_and_nothing_written(tmp_path, sqlite_url, "schedule", "acme", "--cron", "0 0 3 * * *")
    assert six == (
        "Error: '0 0 3 * * *' has six fields, and Prefect would read the first as seconds; "
        'write five (minute hour day-of-month month day-of-week), like "0 3 * * *".'
    )
    every_minute = refused_and_nothing_written(tmp_path, sqlite_url, "schedule", "acme", "--cron", "* * * * *")
    assert every_minute == "Error: Cron '* * * * *' runs as often as every 60 s; the shortest interval is 5 min."
    interval = refused_and_nothing_written(tmp_path, sqlite_url, "schedule", "acme", "--every", "1m")
    assert interval == "Error: An interval of 60 s is too short; the shortest is 5 min."

    out = succeeded(provision(tmp_path, sqlite_url, "schedule", "acme", "--cron", "*/5 * * * *"))
    assert "syncs automatically: cron '*/5 * * * *'" in out
    assert [(r["schedule_cron"], r["schedule_interval_seconds"]) for r in rows_of(sqlite_url, "integrations")] == [
        ("*/5 * * * *", None)
    ]


# ---- item 6: hand-made employees obey a sync's name rules -------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Anna",
        "  Anna  ",
        "A" * MAX_NAME_LENGTH,
        "A" * (MAX_NAME_LENGTH + 1),
        "A" * 500,
        "An\x00na",  # a NUL byte
        "\x1b[31mAnna",  # a terminal escape sequence
        "An\x85na",  # C1 NEL inside a name (at its ends it is whitespace, trimmed)
        "Zoë 👩‍💻",
        "\u202eannA",  # a bidi override: tolerated, as a sync tolerates it
    ],
)
def test_a_hand_made_name_is_judged_as_a_sync_judges_a_source_users_name(name: str) -> None:
    users, _, _ = normalize_users(
        [{"id": "u1", "first_name": name, "emails": [{"email": "anna@acme.example", "type": "WORK"}]}]
    )
    quarantined_for = users["problem"][0]
    assert name_problem(name.strip()) == quarantined_for
    if quarantined_for is None:
        assert person_name(name, "first name") == name.strip()
    else:
        with pytest.raises(InvalidName, match=quarantined_for):
            person_name(name, "first name")


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_a_hand_made_employee_needs_a_name_that_is_not_blank(blank: str) -> None:
    with pytest.raises(InvalidName) as refusal:
        person_name(blank, "last name")
    assert str(refusal.value) == "The last name is empty."


def test_the_admin_api_refuses_such_a_name_as_invalid_input(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    add_tenant(engine, "acme")
    before = db_state(sqlite_url)
    for first, last in [("Anna", " "), ("A" * 150, "B" * 150)]:  # together over 200: a sync's display name
        with pytest.raises(InvalidName) as refusal:
            create_employee(engine, "acme", email="anna@acme.example", first_name=first, last_name=last, actor="t")
        assert status_of(refusal.value) == 422
    assert db_state(sqlite_url) == before


@pytest.mark.slow  # the real process
@pytest.mark.parametrize(
    ("first", "last", "sentence"),
    [
        ("", "Muster", "Error: The first name is empty."),
        ("Anna", "   ", "Error: The last name is empty."),
        ("An\x1b[31mna", "Muster", "Error: The first name is not accepted: name contains control characters."),
        ("A" * 500, "Muster", "Error: The first name is not accepted: name longer than 200 characters."),
    ],
)
def test_employee_add_refuses_a_name_a_sync_would_quarantine(
    tmp_path: Path, sqlite_url: str, first: str, last: str, sentence: str
) -> None:
    add_tenant(make_engine(sqlite_url), "acme")
    args = ["employee", "add", "acme", "--email", "anna@acme.example", "--first-name", first, "--last-name", last]
    assert refused_and_nothing_written(tmp_path, sqlite_url, *args) == sentence


@pytest.mark.slow  # the real process
def test_employee_add_stores_names_trimmed_as_a_sync_stores_them(tmp_path: Path, sqlite_url: str) -> None:
    add_tenant(make_engine(sqlite_url), "acme")
    args = ["employee", "add", "acme", "--email", "anna@acme.example", "--first-name", " Anna ", "--last-name", "Zoë\t"]
    succeeded(provision(tmp_path, sqlite_url, *args))
    [employee] = rows_of(sqlite_url, "employees")
    assert (employee["first_name"], employee["last_name"], employee["display_name"]) == ("Anna", "Zoë", "Anna Zoë")


# ---- item 14: a usage mistake is one sentence and exit code 1 --------------------------------------


@pytest.mark.slow  # the real process
@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ["schedule", "acme", "--evry", "1h"],
            "Error: No such option: --evry (Possible options: --every); see `provision schedule --help`.",
        ),
        (
            ["employee", "add", "acme", "--email", "anna@acme.example"],
            "Error: Missing option '--first-name'; see `provision employee add --help`.",
        ),
        (
            ["guard", "acme", "--min-count", "many"],
            "Error: Invalid value for '--min-count': Input should be a valid integer, unable to parse string as an "
            "integer; see `provision guard --help`.",
        ),
        (
            ["tenant", "shwo", "acme"],
            "Error: No such command 'shwo' (did you mean 'show'?); see `provision tenant --help`.",
        ),
    ],
    ids=["unknown option", "missing option", "malformed value", "unknown command"],
)
def test_a_usage_mistake_is_one_sentence_and_exit_code_1_like_every_refusal(
    tmp_path: Path, sqlite_url: str, args: list[str], sentence: str
) -> None:
    connected(sqlite_url)
    assert refused_and_nothing_written(tmp_path, sqlite_url, *args) == sentence


@pytest.mark.slow  # the real process
def test_a_command_group_without_a_command_shows_its_help_and_exits_1(tmp_path: Path, sqlite_url: str) -> None:
    result = provision(tmp_path, sqlite_url, "tenant")
    assert result.returncode == 1
    assert "Usage:" in result.stdout and "show" in result.stdout
    assert result.stderr == ""


# ---- item 15: tenant list, tenant show, runs without runs -------------------------------------------


@pytest.mark.slow  # the real process
def test_tenant_list_says_when_there_are_no_tenants(tmp_path: Path, sqlite_url: str) -> None:
    assert succeeded(provision(tmp_path, sqlite_url, "tenant", "list")) == (
        "No tenants yet; create one with `provision tenant add TENANT`.\n"
    )


def a_run(url: str, tenant: str, outcome: str, error: str | None = None) -> str:
    engine = make_engine(url)
    run_id = start_run(engine, tenant, trigger="cli", parameters={}, flow_run_id=None, dry_run=False)
    finish_run(
        engine, run_id, outcome=outcome, counts={"created": 2}, failed_stage="extract" if error else None, error=error
    )
    return run_id


@pytest.mark.slow  # the real process
def test_tenant_list_shows_every_tenant_with_its_integration_schedule_and_last_run(
    tmp_path: Path, sqlite_url: str
) -> None:
    connected(sqlite_url, "acme")
    set_schedule(make_engine(sqlite_url), "acme", checked("0 3 * * *", None, "Europe/Berlin"))
    a_run(sqlite_url, "acme", "failed", "The source said no.")
    newest = a_run(sqlite_url, "acme", "succeeded")
    add_tenant(make_engine(sqlite_url), "beta", "Beta AG")

    lines = succeeded(provision(tmp_path, sqlite_url, "tenant", "list")).splitlines()
    assert [line.split()[:3] for line in lines] == [["acme", "active", "(entra)"], ["beta", "not_connected", "off"]]
    assert "cron '0 3 * * *' (Europe/Berlin)" in lines[0] and "succeeded" in lines[0] and "ACME GmbH" in lines[0]
    assert "no runs" in lines[1] and "Beta AG" in lines[1]

    listed = json.loads(succeeded(provision(tmp_path, sqlite_url, "tenant", "list", "--json")))
    assert [(t["tenant"], t["integration"], t["provider"]) for t in listed] == [
        ("acme", "active", "entra"),
        ("beta", "not_connected", None),
    ]
    assert listed[0]["schedule"] == {"cron": "0 3 * * *", "interval_seconds": None, "timezone": "Europe/Berlin"}
    assert listed[0]["last_run"]["run_id"] == newest and listed[1]["last_run"] is None


@pytest.mark.slow  # the real process
def test_tenant_show_puts_a_tenants_whole_state_in_one_place_and_writes_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    engine = make_engine(sqlite_url)
    connected(sqlite_url)
    groups = {
        "group_id": ["g-eng", "g-ops"],
        "name": ["Engineering", "Operations"],
        "parent_id": [None, None],
        "type": ["DEPARTMENT", None],
    }
    replace_groups(engine, "acme", pl.DataFrame({**groups, "member_count": [2, 1]}))
    select_groups(engine, "acme", ["g-eng"], all_users=False)
    set_schedule(engine, "acme", checked(None, parse_every("24h"), None))
    set_guard(engine, "acme", max_share=0.2, min_count=5)
    set_policy(engine, "acme", mode="delete", grace_days=14)
    run_id = a_run(sqlite_url, "acme", "failed", "The source said no.")
    before = db_state(sqlite_url)

    lines = succeeded(provision(tmp_path, sqlite_url, "tenant", "show", "acme")).splitlines()
    assert lines[0].startswith("Tenant acme (ACME GmbH), created ")
    assert lines[1:] == [
        "  integration  active: entra, connection conn-acme at https://api.unified.to, last run failing",
        "  selection    g-eng (Engineering)",
        "  schedule     every 86400 s",
        "  guard        stops a run that would flag more than 20% of the employees and at least 5 of them",
        "  policy       delete: flagged employees are inactive for the platform at once, and deleted by the first "
        "run 14 days after they were flagged",
        "  employees    none",
        f"  last run     failed at {rows_of(sqlite_url, 'runs')[0]['started_at'].isoformat()}, run {run_id} "
        "(extract: The source said no.)",
    ]

    shown = json.loads(succeeded(provision(tmp_path, sqlite_url, "tenant", "show", "acme", "--json")))
    assert shown["integration"] == {
        "state": "active",
        "provider": "entra",
        "connection_id": "conn-acme",
        "base_url": "https://api.unified.to",
        "health": "failing",
    }
    assert shown["selection"] == {"all_users": False, "groups": [{"group_id": "g-eng", "name": "Engineering"}]}
    assert shown["schedule"] == {"cron": None, "interval_seconds": 86400, "timezone": None}
    assert shown["guard"] == {"max_share": 0.2, "min_count": 5}
    assert shown["policy"] == {"mode": "delete", "grace_days": 14}
    assert shown["employees"] == {}
    assert shown["last_run"]["run_id"] == run_id and shown["last_run"]["error"] == "The source said no."
    assert db_state(sqlite_url) == before


@pytest.mark.slow  # the real process
def test_tenant_show_of_a_tenant_not_connected_says_how_to_connect_it(tmp_path: Path, sqlite_url: str) -> None:
    add_tenant(make_engine(sqlite_url), "acme")
    text = succeeded(provision(tmp_path, sqlite_url, "tenant", "show", "acme"))
    assert "  integration  not connected; connect it with `provision connect acme`\n" in text
    assert "  last run     none yet\n" in text


@pytest.mark.slow  # the real process
def test_tenant_show_refuses_an_unknown_tenant(tmp_path: Path, sqlite_url: str) -> None:
    sentence = refused_and_nothing_written(tmp_path, sqlite_url, "tenant", "show", "nope")
    assert sentence == "Error: Unknown tenant 'nope'; create it with `provision tenant add nope`."


@pytest.mark.slow  # the real process
def test_runs_of_a_tenant_without_runs_says_so(tmp_path: Path, sqlite_url: str) -> None:
    add_tenant(make_engine(sqlite_url), "acme")
    assert succeeded(provision(tmp_path, sqlite_url, "runs", "acme")) == (
        "Tenant acme has no runs yet; `provision sync acme` starts one.\n"
    )
    assert json.loads(succeeded(provision(tmp_path, sqlite_url, "runs", "acme", "--json"))) == []


# ---- issue 12: the deprovisioning policy ---------------------------------------------------------------


@pytest.mark.slow  # the real process
def test_policy_shows_changes_and_refuses_what_is_not_a_policy(tmp_path: Path, sqlite_url: str) -> None:
    connected(sqlite_url)
    assert succeeded(provision(tmp_path, sqlite_url, "policy", "acme")) == (
        "Tenant acme: flag: employees who left or were disabled are flagged (non_matching, terminated), nothing more.\n"
    )
    changed = provision(tmp_path, sqlite_url, "policy", "acme", "--mode", "delete", "--grace-days", "14", "--json")
    assert json.loads(succeeded(changed)) == {"mode": "delete", "grace_days": 14}
    (entry,) = [row for row in rows_of(sqlite_url, "audit_log") if row["action"] == "settings_changed"]
    assert entry["old"]["policy"] == {"mode": "flag", "grace_days": 30}
    assert entry["new"]["policy"] == {"mode": "delete", "grace_days": 14}

    assert refused_and_nothing_written(tmp_path, sqlite_url, "policy", "acme", "--mode", "erase") == (
        "Error: Unknown deprovisioning mode 'erase'; choose one of flag, deactivate, delete."
    )
    assert refused_and_nothing_written(tmp_path, sqlite_url, "policy", "acme", "--grace-days", "0") == (
        "Error: The grace period must be 1 to 3650 days, not 0."
    )
    shown = json.loads(succeeded(provision(tmp_path, sqlite_url, "policy", "acme", "--json")))
    assert shown == {"mode": "delete", "grace_days": 14}


# ---- issue 12: group sync ------------------------------------------------------------------------------


@pytest.mark.slow  # the real process
def test_groups_selected_and_employees_of_a_group(tmp_path: Path, sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    connected(sqlite_url)
    groups = {
        "group_id": ["g-eng", "g-ops"],
        "name": ["Engineering", "Operations"],
        "parent_id": [None, None],
        "type": ["DEPARTMENT", None],
    }
    replace_groups(engine, "acme", pl.DataFrame({**groups, "member_count": [2, 1]}))
    select_groups(engine, "acme", ["g-eng"], all_users=False)
    for email in ("ada@acme.example", "bob@acme.example"):
        create_employee(engine, "acme", email=email, first_name="A", last_name="B", actor="test")
    ada = next(r["id"] for r in rows_of(sqlite_url, "employees") if r["email"] == "ada@acme.example")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO employee_groups (tenant_id, employee_id, group_id) VALUES ('acme', :e, 'g-eng')"),
            {"e": ada},
        )

    assert succeeded(provision(tmp_path, sqlite_url, "groups", "acme", "--selected")) == (
        "g-eng                        DEPARTMENT           1 employees  Engineering\n"
    )
    listed = json.loads(succeeded(provision(tmp_path, sqlite_url, "groups", "acme", "--selected", "--json")))
    assert listed == [
        {
            "group_id": "g-eng",
            "name": "Engineering",
            "type": "DEPARTMENT",
            "parent_id": None,
            "member_count": 2,
            "employees": 1,
        }
    ]
    members = json.loads(succeeded(provision(tmp_path, sqlite_url, "employees", "acme", "--group", "g-eng", "--json")))
    assert [m["email"] for m in members] == ["ada@acme.example"]
    assert succeeded(provision(tmp_path, sqlite_url, "employees", "acme", "--group", "g-ops")) == ""
