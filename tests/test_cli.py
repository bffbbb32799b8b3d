"""The `provision` command as an admin uses it: in-process through Typer's runner, against the simulator
over real HTTP and a real database; `provision demo` and `provision sync --json` also as real processes.

A refused command must print one sentence on stderr, exit non-zero and leave the database as it was.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import create_engine, inspect, select
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from cli.main import app
from store.models import Base
from tests.processes import clean_env, provision_command
from tests.tables import db_state, rows_of
from tests.upstreams import CONNECTION, TOKEN, Upstream
from tests.wire import dataset, group, person

ALL_COUNTS = {
    "created",
    "linked",
    "updated",
    "unchanged",
    "non_matching",
    "terminated",
    "reactivated",
    "skipped_inactive",
    "filtered_out",
    "invalid",
    "conflicts",
}

runner = CliRunner()


# ---- helpers ----------------------------------------------------------------------------------


def provision(*args: str) -> Result:
    return runner.invoke(app, list(args))


def ok(*args: str) -> Result:
    result = provision(*args)
    assert result.exit_code == 0, f"provision {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    assert result.exception is None, result.exc_info
    return result


def refused(*args: str) -> str:
    """Run a command that must be refused; return its one-sentence error."""
    return refusal(provision(*args))


def refusal(result: Result) -> str:
    assert result.exit_code != 0, f"the command succeeded:\n{result.output}"
    # A refusal ends in typer.Exit (SystemExit); anything else is a crash with a traceback.
    assert isinstance(result.exception, SystemExit), result.exc_info
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def counts_in_text(output: str) -> dict[str, int]:
    """The `  name   value` lines of `provision sync`'s text output."""
    counts = {}
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("  ") and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def company() -> dict[str, Any]:
    """Engineering sits inside Company; Other is never selected; erik is disabled."""
    return dataset(
        [
            person("u1", "anna@acme.example", "Anna", "Muster"),
            person("u2", "ben@acme.example", "Ben", "Berg"),
            person("u3", "carla@acme.example", "Carla", "Czech"),
            person("u4", "dora@acme.example", "Dora", "Draußen"),
            person("u5", "erik@acme.example", "Erik", "Ex", active=False),
        ],
        [
            group("g-root", "Company", []),
            group("g-eng", "Engineering", ["u1", "u2"], parent="g-root"),
            group("g-ops", "Operations", ["u3", "u5"]),
            group("g-other", "Other", ["u4"]),
        ],
    )


@pytest.fixture
def upstream(upstream: Upstream) -> Upstream:
    """The shared fake upstream (tests/conftest.py), listing `company()`."""
    upstream.source.replace(company())
    return upstream


@pytest.fixture
def sqlite_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Only SQLite, for the tests where the dialect cannot matter (refusals, listings)."""
    monkeypatch.setenv("PROVISIONING_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    return sqlite_url


def connected_tenant(upstream: Upstream, *groups: str) -> None:
    """Tenant acme with two hand-made employees, connected, its groups listed and `groups` selected."""
    ok("tenant", "add", "acme", "--name", "ACME GmbH")
    ok("employee", "add", "acme", "--email", "ANNA@ACME.EXAMPLE", "--first-name", "Old", "--last-name", "Name")
    ok("employee", "add", "acme", "--email", "gone@acme.example", "--first-name", "Gone", "--last-name", "Away")
    ok("connect", "acme", "--provider", "entra", "--connection-id", CONNECTION, "--base-url", upstream.url)
    ok("groups", "acme")
    if groups:
        ok("filter", "acme", *(arg for g in groups for arg in ("--group", g)))


# ---- every command explains itself --------------------------------------------------------------

COMMANDS = [
    ["tenant", "add"],
    ["tenant", "list"],
    ["tenant", "show"],
    ["employee", "add"],
    ["employee", "delete"],
    ["connect"],
    ["groups"],
    ["filter"],
    ["sync"],
    ["guard"],
    ["policy"],
    ["employees"],
    ["runs"],
    ["run", "show"],
    ["disconnect"],
    ["db", "upgrade"],
    ["simulator"],
    ["demo"],
    ["schedule"],
    ["deploy"],
    ["sync-all"],
    ["erase"],
    ["explain"],
    ["serve"],
    ["api-key", "create"],
    ["api-key", "list"],
    ["api-key", "revoke"],
    ["audit"],
    ["tenant", "delete"],
    ["export"],
    ["suppression"],
    ["retention", "period"],
    ["retention", "run"],
]


def test_the_help_list_names_every_command_the_app_has() -> None:
    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path

    assert sorted(walk(typer.main.get_command(app), [])) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_that_exits_zero(command: list[str]) -> None:
    result = ok(*command, "--help")
    assert "Usage:" in result.stdout and command[-1] in result.stdout
    assert result.stderr == ""


# ---- the admin's setup, end to end ------------------------------------------------------------


@pytest.mark.usefixtures("prefect_api")
def test_admin_connects_lists_groups_filters_and_syncs_a_tenant(database_url: str, upstream: Upstream) -> None:
    ok("tenant", "add", "acme", "--name", "ACME GmbH")
    ok("employee", "add", "acme", "--email", "ANNA@ACME.EXAMPLE", "--first-name", "Old", "--last-name", "Name")
    ok("employee", "add", "acme", "--email", "gone@acme.example", "--first-name", "Gone", "--last-name", "Away")

    out = ok("connect", "acme", "--provider", "entra", "--connection-id", CONNECTION, "--base-url", upstream.url)
    assert "connected to entra" in out.stdout
    assert upstream.requested_kinds() == {"connection", "employee", "group"}  # the check read both
    [integration] = rows_of(database_url, "integrations")
    assert (integration["state"], integration["provider"], integration["connection_id"]) == (
        "active",
        "entra",
        CONNECTION,
    )
    assert integration["base_url"] == upstream.url

    text = ok("groups", "acme").stdout
    assert all(name in text for name in ("Company", "Engineering", "Operations", "Other"))
    listed = json.loads(ok("groups", "acme", "--json").stdout)
    assert {g["group_id"]: (g["name"], g["member_count"]) for g in listed} == {
        "g-root": ("Company", 2),  # Engineering's members count for Company too
        "g-eng": ("Engineering", 2),
        "g-ops": ("Operations", 2),
        "g-other": ("Other", 1),
    }

    ok("filter", "acme", "--group", "g-root", "--group", "g-ops")
    [integration] = rows_of(database_url, "integrations")
    assert (integration["selected_group_ids"], integration["all_users"]) == (["g-root", "g-ops"], False)

    synced = ok("sync", "acme").stdout
    assert "succeeded" in synced
    counts = counts_in_text(synced)
    assert {k: counts[k] for k in ("created", "linked", "non_matching", "skipped_inactive", "filtered_out")} == {
        "created": 2,  # ben, carla
        "linked": 1,  # anna, found by email in another case
        "non_matching": 1,  # gone
        "skipped_inactive": 1,  # erik
        "filtered_out": 1,  # dora
    }
    assert "employees now: non_matching 1, synced 3" in synced

    employees = json.loads(ok("employees", "acme", "--json").stdout)
    gone_flagged_at = employees[-1]["flagged_at"]
    assert datetime.fromisoformat(gone_flagged_at) > datetime.now(UTC) - timedelta(minutes=5)
    assert employees == [
        {
            "email": "anna@acme.example",
            "first_name": "Anna",
            "last_name": "Muster",
            "display_name": "Anna Muster",
            "status": "synced",
            "link": "u1",
            "reason": None,
            "flagged_at": None,
            "deactivated": False,
            "leave_date": None,
        },
        {
            "email": "ben@acme.example",
            "first_name": "Ben",
            "last_name": "Berg",
            "display_name": "Ben Berg",
            "status": "synced",
            "link": "u2",
            "reason": None,
            "flagged_at": None,
            "deactivated": False,
            "leave_date": None,
        },
        {
            "email": "carla@acme.example",
            "first_name": "Carla",
            "last_name": "Czech",
            "display_name": "Carla Czech",
            "status": "synced",
            "link": "u3",
            "reason": None,
            "flagged_at": None,
            "deactivated": False,
            "leave_date": None,
        },
        {
            "email": "gone@acme.example",
            "first_name": "Gone",
            "last_name": "Away",
            "display_name": "Gone Away",
            "status": "non_matching",
            "link": None,
            "reason": "never matched: no source user has its email",  # what the run that flagged it said
            "flagged_at": gone_flagged_at,
            "deactivated": False,
            "leave_date": None,
        },
    ]
    flagged = json.loads(ok("employees", "acme", "--status", "non_matching", "--json").stdout)
    assert [e["email"] for e in flagged] == ["gone@acme.example"]
    assert "gone@acme.example" in ok("employees", "acme").stdout
    assert "(never matched: no source user has its email)" in ok("employees", "acme").stdout

    [run] = json.loads(ok("runs", "acme", "--json").stdout)
    assert run["outcome"] == "succeeded"
    assert run["trigger"] == "cli"
    assert run["counts"]["created"] == 2 and run["counts"]["linked"] == 1
    assert run["run_id"] in ok("runs", "acme").stdout

    changes = json.loads(ok("run", "show", run["run_id"], "--json").stdout)
    employee_changes = [c for c in changes if c["action"] not in ("joined", "left")]
    assert sorted((c["action"], c["source_user_id"]) for c in employee_changes) == [
        ("created", "u2"),
        ("created", "u3"),
        ("linked", "u1"),
        ("non_matching", None),
    ]
    joined = {(c["source_user_id"], c["group_id"]) for c in changes if c["action"] == "joined"}
    assert {who for who, _ in joined} == {"u1", "u2", "u3"}  # group sync: the synced ones joined their groups
    shown = ok("run", "show", run["run_id"]).stdout
    assert shown.count("created") == 2 and "linked" in shown and "non_matching" in shown


@pytest.mark.usefixtures("prefect_api")
def test_sync_json_prints_one_object_with_the_run_id_and_every_count(sqlite_db: str, upstream: Upstream) -> None:
    connected_tenant(upstream, "g-root", "g-ops")
    ok("sync", "acme")
    changed = company()
    changed["employees"][1]["emails"][0]["email"] = "ben.berg@acme.example"  # updated
    changed["employees"][2]["employment_status"] = "INACTIVE"  # terminated
    changed["employees"].append(person("u6", "finn@acme.example", "Finn", "Neu"))  # created
    changed["groups"][1]["user_ids"].append("u6")
    upstream.source.replace(changed)

    result = ok("sync", "acme", "--json")
    second = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert isinstance(second, dict)
    assert set(second["counts"]) >= ALL_COUNTS
    assert {k: second["counts"][k] for k in ALL_COUNTS} == {
        "created": 1,
        "linked": 0,
        "updated": 1,
        "unchanged": 1,  # anna
        "non_matching": 0,  # gone was flagged by the first run already
        "terminated": 1,
        "reactivated": 0,
        "skipped_inactive": 1,
        "filtered_out": 1,
        "invalid": 0,
        "conflicts": 0,
    }
    assert second["outcome"] == "succeeded"
    assert second["totals"] == {"synced": 3, "terminated": 1, "non_matching": 1}
    [newest, _] = json.loads(ok("runs", "acme", "--json").stdout)
    assert newest["run_id"] == second["run_id"]
    assert newest["counts"] == second["counts"]


@pytest.mark.usefixtures("prefect_api")
def test_disconnect_keeps_employees_unmanaged_and_unlinked_and_syncs_no_more(
    database_url: str, upstream: Upstream
) -> None:
    connected_tenant(upstream, "g-root", "g-ops")
    ok("sync", "acme")
    before = {e["email"] for e in json.loads(ok("employees", "acme", "--json").stdout)}

    out = ok("disconnect", "acme").stdout
    assert "4 employees are now unmanaged" in out
    after = json.loads(ok("employees", "acme", "--json").stdout)
    assert {e["email"] for e in after} == before
    assert {(e["status"], e["link"]) for e in after} == {("unmanaged", None)}
    [integration] = rows_of(database_url, "integrations")
    assert integration["state"] == "disconnected"

    state = db_state(database_url)
    assert "no active integration" in refused("sync", "acme")
    assert db_state(database_url) == state


def test_filter_all_users_selects_everyone(sqlite_db: str, upstream: Upstream) -> None:
    connected_tenant(upstream)
    assert "all users" in ok("filter", "acme", "--all-users").stdout
    [integration] = rows_of(sqlite_db, "integrations")
    assert (integration["selected_group_ids"], integration["all_users"]) == ([], True)


def test_db_upgrade_creates_the_schema_of_a_new_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    new = tmp_path / "new.db"  # not the `sqlite_url` fixture's: that one comes migrated already
    monkeypatch.setenv("PROVISIONING_DATABASE_URL", f"sqlite:///{new}")
    assert "is up to date" in ok("db", "upgrade").stdout
    # Read with a plain engine: the store's own (make_engine) would migrate the file itself.
    plain = create_engine(f"sqlite:///{new}")
    try:
        assert set(inspect(plain).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
        with plain.connect() as conn:
            assert all(conn.execute(select(t)).first() is None for t in Base.metadata.sorted_tables)
    finally:
        plain.dispose()


# ---- refusals: one sentence, non-zero exit, nothing written -------------------------------------

UNKNOWN_TENANT_COMMANDS = [
    ["employee", "add", "ghost", "--email", "a@acme.example", "--first-name", "A", "--last-name", "B"],
    ["connect", "ghost", "--provider", "entra", "--connection-id", CONNECTION, "--base-url", "http://127.0.0.1:9"],
    ["groups", "ghost"],
    ["filter", "ghost", "--group", "g-eng"],
    ["filter", "ghost", "--all-users"],
    ["sync", "ghost"],
    ["guard", "ghost"],
    ["policy", "ghost"],
    ["policy", "ghost", "--mode", "deactivate"],
    ["audit", "ghost"],
    ["api-key", "create", "--tenant", "ghost", "--name", "ghost-key"],
    ["employees", "ghost"],
    ["runs", "ghost"],
    ["disconnect", "ghost"],
    ["explain", "ghost", "--email", "a@acme.example"],
    ["export", "ghost", "--email", "a@acme.example"],
    ["suppression", "ghost"],
    ["retention", "period", "ghost", "--days", "30"],
    ["retention", "run", "--tenant", "ghost"],
    ["tenant", "delete", "ghost", "--yes"],
]


@pytest.mark.parametrize(
    "command",
    UNKNOWN_TENANT_COMMANDS,
    ids=lambda c: " ".join(a for a in c if a.startswith("--") or (a.isalpha() and a != "ghost")),
)
def test_every_command_taking_a_tenant_refuses_an_unknown_one(sqlite_db: str, command: list[str]) -> None:
    ok("tenant", "add", "acme")
    state = db_state(sqlite_db)
    error = refused(*command)
    assert "Unknown tenant 'ghost'" in error
    assert db_state(sqlite_db) == state


def test_an_unknown_run_id_is_refused(sqlite_db: str) -> None:
    ok("tenant", "add", "acme")
    assert "Unknown run 'no-such-run'" in refused("run", "show", "no-such-run")


def test_a_tenant_cannot_be_added_twice(sqlite_db: str) -> None:
    ok("tenant", "add", "acme", "--name", "ACME GmbH")
    state = db_state(sqlite_db)
    assert "already exists" in refused("tenant", "add", "acme", "--name", "Other name")
    assert db_state(sqlite_db) == state


@pytest.mark.parametrize(
    "command",
    [
        ["sync", "acme"],
        ["groups", "acme"],
        ["filter", "acme", "--group", "g-eng"],
        ["guard", "acme"],
        ["disconnect", "acme"],
        ["explain", "acme", "--source-id", "u1"],
    ],
    ids=lambda c: c[0],
)
def test_commands_that_need_an_integration_say_so_before_connect(sqlite_db: str, command: list[str]) -> None:
    ok("tenant", "add", "acme")
    state = db_state(sqlite_db)
    assert "has no active integration; connect one with `provision connect acme`" in refused(*command)
    assert db_state(sqlite_db) == state


def test_sync_without_selected_groups_is_refused(sqlite_db: str, upstream: Upstream) -> None:
    connected_tenant(upstream)
    state = db_state(sqlite_db)
    assert "no groups selected" in refused("sync", "acme")
    assert db_state(sqlite_db) == state  # no run row either


def test_filter_refuses_a_group_id_the_source_does_not_list(sqlite_db: str, upstream: Upstream) -> None:
    connected_tenant(upstream, "g-eng")
    state = db_state(sqlite_db)
    error = refused("filter", "acme", "--group", "g-ops", "--group", "g-nope")
    assert "g-nope" in error and "g-ops" not in error
    assert db_state(sqlite_db) == state  # g-eng still the selection


def test_filter_refuses_groups_together_with_all_users(sqlite_db: str, upstream: Upstream) -> None:
    connected_tenant(upstream, "g-eng")
    state = db_state(sqlite_db)
    assert "either --group or --all-users" in refused("filter", "acme", "--group", "g-ops", "--all-users")
    assert db_state(sqlite_db) == state


def test_filter_refuses_an_empty_selection(sqlite_db: str, upstream: Upstream) -> None:
    connected_tenant(upstream, "g-eng")
    state = db_state(sqlite_db)
    assert "at least one group" in refused("filter", "acme")
    assert db_state(sqlite_db) == state


def test_connect_refuses_an_unknown_provider(sqlite_db: str, upstream: Upstream) -> None:
    ok("tenant", "add", "acme")
    error = refused(
        "connect", "acme", "--provider", "bamboo", "--connection-id", CONNECTION, "--base-url", upstream.url
    )
    assert "Unknown provider 'bamboo'" in error
    assert upstream.requested_kinds() == set()
    assert rows_of(sqlite_db, "integrations") == []


def test_connect_to_an_unreachable_source_writes_no_integration(sqlite_db: str) -> None:
    ok("tenant", "add", "acme")
    url = f"http://127.0.0.1:{closed_port()}"
    # The client retries a refused connection with backoff (5 attempts, a few seconds in all).
    error = refused("connect", "acme", "--provider", "entra", "--connection-id", CONNECTION, "--base-url", url)
    assert "connection failed" in error
    assert rows_of(sqlite_db, "integrations") == []


def test_connect_with_a_wrong_token_says_so_without_the_token(
    sqlite_db: str, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-token-9a4b"
    monkeypatch.setenv("UNIFIED_API_TOKEN", wrong)
    ok("tenant", "add", "acme")
    result = provision(
        "connect", "acme", "--provider", "entra", "--connection-id", CONNECTION, "--base-url", upstream.url
    )
    error = refusal(result)
    assert "refused the API token (401)" in error
    assert wrong not in result.output and TOKEN not in result.output
    assert rows_of(sqlite_db, "integrations") == []


def test_connect_with_an_unknown_connection_id_writes_no_integration(sqlite_db: str, upstream: Upstream) -> None:
    ok("tenant", "add", "acme")
    error = refused("connect", "acme", "--provider", "entra", "--connection-id", "conn-x", "--base-url", upstream.url)
    assert "404" in error and "conn-x" in error
    assert rows_of(sqlite_db, "integrations") == []


def test_connect_refuses_a_second_connection_while_one_is_active(sqlite_db: str, upstream: Upstream) -> None:
    connected_tenant(upstream, "g-eng")
    state = db_state(sqlite_db)
    error = refused(
        "connect", "acme", "--provider", "entra", "--connection-id", "conn-2", "--base-url", upstream.url, "--no-check"
    )
    assert "already connected" in error and "disconnect it first" in error
    assert db_state(sqlite_db) == state


@pytest.mark.parametrize(
    "email", ["not-an-email", "anna@", "@acme.example", "anna berg@acme.example", "anna@@acme.example", "anna@acme"]
)
def test_employee_add_refuses_an_invalid_email(sqlite_db: str, email: str) -> None:
    ok("tenant", "add", "acme")
    state = db_state(sqlite_db)
    error = refused("employee", "add", "acme", "--email", email, "--first-name", "A", "--last-name", "B")
    assert "is not an email address" in error
    assert db_state(sqlite_db) == state


def test_employee_add_refuses_an_email_the_tenant_has_in_another_case(sqlite_db: str) -> None:
    ok("tenant", "add", "acme")
    ok("employee", "add", "acme", "--email", "anna@acme.example", "--first-name", "Anna", "--last-name", "M")
    state = db_state(sqlite_db)
    error = refused(
        "employee", "add", "acme", "--email", " Anna@ACME.example ", "--first-name", "A", "--last-name", "M"
    )
    assert "already has an employee with that email" in error
    assert db_state(sqlite_db) == state


def test_the_same_email_may_be_an_employee_of_two_tenants(sqlite_db: str) -> None:
    ok("tenant", "add", "acme")
    ok("tenant", "add", "globex")
    for tenant in ("acme", "globex"):
        ok("employee", "add", tenant, "--email", "anna@acme.example", "--first-name", "Anna", "--last-name", "M")
    assert len(rows_of(sqlite_db, "employees")) == 2


def test_employees_refuses_an_unknown_status(sqlite_db: str) -> None:
    ok("tenant", "add", "acme")
    error = refused("employees", "acme", "--status", "deleted")
    assert "Unknown status 'deleted'" in error and "non_matching" in error


def test_simulator_refuses_a_missing_dataset_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert f"No dataset file at {missing}" in refused("simulator", "--dataset", str(missing), "--port", "0")


# ---- real processes -----------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_api")
def test_sync_json_stdout_stays_parseable_while_prefect_logs(
    sqlite_db: str, upstream: Upstream, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    connected_tenant(upstream, "g-root", "g-ops")
    env = {
        **clean_env(tmp_path),
        "PROVISIONING_DATABASE_URL": sqlite_db,
        "UNIFIED_API_TOKEN": TOKEN,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the test harness's server, not a new one
    }
    done = subprocess.run(
        [provision_command(), "sync", "acme", "--json", "--verbose"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["counts"]["created"] == 2
    assert "Flow run 'sync-acme'" in done.stderr  # Prefect did log, to stderr


def serve_demo(home: Path, port: int) -> tuple[str, str]:
    """`provision demo --serve` as a newcomer runs it: its output up to the key it prints, and the key; the
    page is then checked as served, and the process stopped with Ctrl-C (SIGINT)."""
    import time

    import httpx

    out = home / "demo.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [provision_command(), "demo", "--serve", "--port", str(port)],
            env=clean_env(home),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "Sign in with this key:" not in out.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()[-3000:]
            time.sleep(0.5)
        printed = out.read_text()
        key = printed.split("Sign in with this key:")[1].split()[0]
        assert f"http://127.0.0.1:{port}/ui" in printed
        page = f"http://127.0.0.1:{port}"
        for _ in range(50):  # uvicorn binds the port a moment after the line is printed
            try:
                assert "Sign in" in httpx.get(f"{page}/ui").text
                break
            except httpx.ConnectError:
                time.sleep(0.2)
        session = httpx.post(f"{page}/sessions", headers={"Authorization": f"Bearer {key}"})
        assert session.status_code == 201, session.text
        cookie = {"Cookie": f"provisioning_session={session.json()['key']}"}
        employees = httpx.get(f"{page}/ui/t/acme/employees?status=terminated", headers=cookie)
        assert employees.status_code == 200 and 'class="status status-terminated"' in employees.text
    finally:
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        proc.wait(30)
    return printed, key


@pytest.mark.slow  # a real process importing Prefect and running two flows on its own ephemeral API
def test_demo_runs_two_syncs_on_embedded_defaults_in_a_fresh_home_then_serves_the_page(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    printed, _key = serve_demo(tmp_path, port)
    first, second = printed.split("== Sync 2")
    assert "== Sync 1" in first and "succeeded" in first
    assert counts_in_text(first)["created"] > 0
    assert "succeeded" in second
    after = counts_in_text(second.split("Employees by status:")[0])
    assert {k: after[k] for k in ("created", "updated", "terminated", "non_matching")} == {
        "created": 1,  # the new hire
        "updated": 1,  # the email change
        "terminated": 1,  # the disabled user
        "non_matching": 1,  # the user moved out of the selected groups
    }
    assert (tmp_path / "data" / "demo.db").is_file()  # its database is in the given home, not the user's


@pytest.mark.parametrize("bad", ["ACME", "acme corp", "acme_corp", "a.cme", "acme-", "a" * 64, "acmé"])
def test_tenant_id_must_be_a_slug_so_deployments_and_artifact_keys_never_collide(
    bad: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_DATABASE_URL", sqlite_url)
    assert "slug" in refused("tenant", "add", bad)
    ok("tenant", "add", "acme-corp-2")


# ---- the setup flow in order, the guard, errors written for a person ------------------------------------


def test_connect_stores_the_group_list_so_filter_follows_at_once(sqlite_db: str, upstream: Upstream) -> None:
    ok("tenant", "add", "acme")
    out = ok("connect", "acme", "--provider", "entra", "--connection-id", CONNECTION, "--base-url", upstream.url)
    assert "5 users and 4 groups listed" in out.stdout
    assert "syncs g-eng" in ok("filter", "acme", "--group", "g-eng").stdout  # no `provision groups` in between


def test_guard_shows_and_changes_the_thresholds_and_refuses_bad_values(sqlite_db: str, upstream: Upstream) -> None:
    connected_tenant(upstream)
    assert "more than 10% of the employees and at least 10" in ok("guard", "acme").stdout
    ok("guard", "acme", "--max-share", "0.25", "--min-count", "5")
    assert json.loads(ok("guard", "acme", "--json").stdout) == {"max_share": 0.25, "min_count": 5}
    before = db_state(sqlite_db)
    assert "above 0 and at most 1" in refused("guard", "acme", "--max-share", "0")
    assert "above 0 and at most 1" in refused("guard", "acme", "--max-share", "1.5", "--min-count", "3")
    assert "at least 1" in refused("guard", "acme", "--min-count", "0")
    assert db_state(sqlite_db) == before  # nothing half-written: the valid --min-count 3 was not stored either
    assert "settings_changed" in ok("audit", "acme").stdout


@pytest.mark.usefixtures("prefect_api")
def test_a_load_that_rolls_back_during_sync_is_one_sentence_not_a_traceback(
    sqlite_db: str, upstream: Upstream, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL
    from sqlalchemy import create_engine, text

    connected_tenant(upstream, "g-root")
    # why: a real failure inside the load's transaction, in a real process (an insert the database refuses)
    refusing = create_engine(sqlite_db)
    with refusing.begin() as conn:
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON employees BEGIN SELECT RAISE(ABORT, 'refused'); END"))
    refusing.dispose()
    env = {
        **clean_env(tmp_path),
        "PROVISIONING_DATABASE_URL": sqlite_db,
        "UNIFIED_API_TOKEN": TOKEN,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }
    done = subprocess.run([provision_command(), "sync", "acme"], env=env, capture_output=True, text=True, timeout=120)
    # Prefect logs the failed task with its traceback; the command itself ends with one sentence (an
    # uncaught exception would end stderr with its own traceback instead).
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("Error: tenant acme: the load was rolled back, nothing was written")
    assert [e["status"] for e in json.loads(ok("employees", "acme", "--json").stdout)] == ["unmanaged", "unmanaged"]


def test_api_keys_are_shown_once_listed_by_name_and_revocable(sqlite_db: str) -> None:
    ok("tenant", "add", "acme")
    created = ok("api-key", "create", "--tenant", "acme", "--name", "acme-page").stdout
    key = created.splitlines()[-1]
    assert key.startswith("pk_") and len(key) > 40
    ok("api-key", "create", "--all-tenants", "--name", "platform")
    listed = ok("api-key", "list").stdout
    assert "acme-page" in listed and "platform" in listed and "(all tenants)" in listed and key not in listed
    assert key not in ok("api-key", "list", "--json").stdout
    assert "exists already" in refused("api-key", "create", "--tenant", "acme", "--name", "acme-page")
    assert "either --tenant T or --all-tenants" in refused(
        "api-key", "create", "--name", "both", "--all-tenants", "--tenant", "acme"
    )
    ok("api-key", "revoke", "acme-page")
    assert "revoked already" in refused("api-key", "revoke", "acme-page")
    assert "No key named 'nope'" in refused("api-key", "revoke", "nope")
    audit = json.loads(ok("audit", "acme", "--json").stdout)
    assert [e["action"] for e in audit] == ["api_key_revoked", "api_key_created"]
    assert key not in json.dumps(audit)


def test_serve_refuses_to_start_without_the_settings_the_connect_flow_needs(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PROVISIONING_STATE_SECRET", "PROVISIONING_UNIFIED_WORKSPACE_ID", "PROVISIONING_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROVISIONING_UNIFIED_WORKSPACE_ID", "ws-1")
    error = refused("serve", "--port", str(closed_port()))
    assert "PROVISIONING_STATE_SECRET" in error and "PROVISIONING_PUBLIC_URL" in error
    assert "WORKSPACE_ID" not in error
