"""The simulator serves each provider in the shape it arrives in through Unified.to (design.md, "Providers as
they arrive through Unified.to"; simulator.datasets): generated and hand-written tenants, over real HTTP, and
`provision simulator --provider` as a real process."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app as cli_app
from domain.words import INTEGRATION_TYPES
from simulator import GROUP_ENDPOINTS, SimulatorSource, create_app, generate_dataset, listed_groups, provider_dataset
from simulator.serve import running_simulator
from simulator.source import DatasetError
from tests.processes import clean_env, provision_command

AUTH = {"Authorization": "Bearer sim-token"}
EMPLOYEES = "/hris/conn-demo/employee"
GROUPS = "/hris/conn-demo/group"
NOW = datetime.now(UTC)
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
GOOGLE_ID = re.compile(r"^[1-9][0-9]{20}$")
NUMERIC = re.compile(r"^[1-9][0-9]*$")
PERSONIO_501 = {"statusCode": 501, "message": "Personio does not support hris_group", "error": "Not Implemented"}


@contextmanager
def served(source: Any, **options: Any) -> Iterator[httpx.Client]:
    """A client of the simulator serving `source` (a dataset, a path or a SimulatorSource) over real HTTP."""
    with running_simulator(create_app(source, **options)) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        yield client


def read_all(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    """Every record of a listing, paged the way the product pages it (stop on a short page)."""
    records: list[dict[str, Any]] = []
    while True:
        r = client.get(path, params={"limit": 100, "offset": len(records)})
        assert r.status_code == 200, r.text
        page = r.json()
        records.extend(page)
        if len(page) < 100:
            return records


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# ---- entra ------------------------------------------------------------------------------------------


def test_entra_stays_the_default_and_its_generated_tenant_is_byte_for_byte_todays() -> None:
    # why: dozens of tests and the benchmarks are written against this tenant; the digest pins it as it was
    # generated before the provider shapes came (the entra code path did not change with them)
    data = generate_dataset(300, seed=5)
    digest = hashlib.sha256(json.dumps(data, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
    assert digest == "756b911f85a465122494b9f2c6cb01c7ed69b4e89bceb72ee34686bb5f264811"
    assert generate_dataset(300, seed=5, provider="entra") == data
    assert set(data) == {"employees", "groups"}  # no profile keys: entra is what a dataset without them means


def test_entra_generated_tenant_is_served_with_listed_groups() -> None:
    data = generate_dataset(150, seed=3)
    with served(data) as client:
        groups = read_all(client, GROUPS)
        employees = read_all(client, EMPLOYEES)
    assert groups == data["groups"]
    assert all("user_ids" in g for g in groups)
    assert len(employees) == 150


def test_entra_dataset_is_served_in_entras_shape() -> None:
    data = provider_dataset("entra")
    assert 6 <= len(data["employees"]) <= 10
    with served(data) as client:
        employees = read_all(client, EMPLOYEES)
        groups = read_all(client, GROUPS)
        connection = client.get("/unified/connection/conn-demo").json()
    assert connection["integration_type"] == INTEGRATION_TYPES["entra"]
    assert all(GUID.match(record["id"]) for record in employees + groups)
    assert not any("groups" in e for e in employees)  # membership only through the group listing
    assert all(g.get("type") in ("GROUP", None) for g in groups)
    assert any("type" not in g for g in groups)
    by_id = {g["id"]: g for g in groups}
    nested = [g for g in groups if g.get("parent_id")]
    assert nested and all(g["parent_id"] in by_id for g in nested)
    only_nested = {u for g in nested for u in g["user_ids"]} - {
        u for g in groups if g not in nested for u in g["user_ids"]
    }
    assert only_nested  # a member reached only through a nested group

    types = {e["id"]: [m["type"] for m in e.get("emails") or []] for e in employees}
    assert any(t == ["OTHER"] for t in types.values())  # the principal name instead of a work address
    assert any(t == [] for t in types.values())  # no email at all
    others = [m["email"] for e in employees for m in e.get("emails") or [] if m["type"] == "OTHER"]
    assert any("#EXT#@" in a for a in others)
    assert any(not a.endswith("@firma.example") and "#EXT#" not in a for a in others)  # a plain foreign guest
    assert {"ACTIVE", "INACTIVE"} == {e["employment_status"] for e in employees}


# ---- personio ---------------------------------------------------------------------------------------


def _assert_personio_employees(employees: list[dict[str, Any]]) -> None:
    assert employees
    for e in employees:
        assert NUMERIC.match(e["id"]), e["id"]
        assert e["employment_status"] in ("ACTIVE", "INACTIVE")
        assert [m["type"] for m in e["emails"]] == ["WORK"]
        for g in e["groups"]:
            assert set(g) == {"id", "name", "type"}  # no nesting, no members
            assert NUMERIC.match(g["id"]) and g["type"] in ("DEPARTMENT", "TEAM", "BRANCH")
        if e["employment_status"] == "INACTIVE":
            assert when(e["terminated_at"]) < NOW  # a leaver
    embedded_types = {g["type"] for e in employees for g in e["groups"]}
    assert embedded_types == {"DEPARTMENT", "TEAM", "BRANCH"}
    assert any(e["employment_status"] == "INACTIVE" for e in employees)
    planned = [e for e in employees if e["employment_status"] == "ACTIVE" and "terminated_at" in e]
    assert any(when(e["terminated_at"]) > NOW for e in planned)


@pytest.mark.parametrize("data", [generate_dataset(400, seed=2, provider="personio"), provider_dataset("personio")])
def test_personio_group_endpoint_is_unsupported_by_default_with_unifieds_error_envelope(data: dict[str, Any]) -> None:
    with served(data) as client:
        listing = client.get(GROUPS)
        one = client.get(f"{GROUPS}/1001")
        unauthenticated = client.get(GROUPS, headers={"Authorization": "Bearer wrong"})
        employees = read_all(client, EMPLOYEES)
        connection = client.get("/unified/connection/conn-demo").json()
    assert (listing.status_code, listing.headers["content-type"]) == (501, "application/json")
    assert listing.json() == PERSONIO_501
    assert (one.status_code, one.json()) == (501, PERSONIO_501)
    assert unauthenticated.status_code == 401  # the token is checked before the integration's limits
    assert connection["integration_type"] == INTEGRATION_TYPES["personio"]  # taken from the dataset
    _assert_personio_employees(employees)


def test_personio_group_endpoint_empty_answers_an_empty_list() -> None:
    with served(generate_dataset(120, seed=2, provider="personio"), group_endpoint="empty") as client:
        r = client.get(GROUPS)
        one = client.get(f"{GROUPS}/1001")
    assert (r.status_code, r.json(), r.headers["X-Total-Count"]) == (200, [], "0")
    assert one.status_code == 404


def test_personio_group_endpoint_listed_lists_the_embedded_groups_without_members() -> None:
    data = generate_dataset(400, seed=9, provider="personio")
    with served(data, group_endpoint="listed") as client:
        groups = read_all(client, GROUPS)
        employees = read_all(client, EMPLOYEES)
        one = client.get(f"{GROUPS}/{groups[0]['id']}")
    assert groups and not any("user_ids" in g or "parent_id" in g for g in groups)
    assert {g["id"] for g in groups} == {g["id"] for e in employees for g in e["groups"]}
    assert len({g["id"] for g in groups}) == len(groups)
    assert {g["type"] for g in groups} == {"DEPARTMENT", "TEAM", "BRANCH"}
    assert (one.status_code, one.json()) == (200, groups[0])


def test_personio_dataset_holds_a_renamed_group_a_leaver_and_a_planned_leave() -> None:
    data = provider_dataset("personio", group_endpoint="listed")
    assert data["group_endpoint"] == "listed" and data["provider"] == "personio"
    assert 6 <= len(data["employees"]) <= 10
    with served(data) as client:
        employees = read_all(client, EMPLOYEES)
        groups = read_all(client, GROUPS)
    _assert_personio_employees(employees)
    names_of_1001 = {g["name"] for e in employees for g in e["groups"] if g["id"] == "1001"}
    assert names_of_1001 == {"Sales", "Sales DACH"}
    assert [g["name"] for g in groups if g["id"] == "1001"] == ["Sales"]  # the name first seen
    assert any(e["groups"] == [] for e in employees)
    assert any(
        e["employment_status"] == "ACTIVE" and when(e.get("terminated_at", "2999-01-01T00:00:00Z")) < NOW
        for e in employees
    )


def test_the_group_endpoint_follows_the_dataset_and_replace_changes_it_between_requests() -> None:
    source = SimulatorSource(generate_dataset(20, seed=1))
    with served(source) as client:
        assert client.get(GROUPS).status_code == 200
        source.replace({**generate_dataset(20, seed=1), "group_endpoint": "unsupported"})
        unsupported = client.get(GROUPS)
        source.replace({**provider_dataset("personio"), "group_endpoint": "empty"})
        empty = client.get(GROUPS)
        source.replace(provider_dataset("personio"))  # the provider's default again
        default = client.get(GROUPS)
        source.replace(provider_dataset("google"))
        listed = client.get(GROUPS)
    # the connection stays entra's (it was made before), so the message names Entra for an entra dataset
    assert unsupported.status_code == 501
    assert unsupported.json()["message"] == "Microsoft Entra ID does not support hris_group"
    assert (empty.status_code, empty.json()) == (200, [])
    assert (default.status_code, default.json()) == (501, PERSONIO_501)
    assert listed.status_code == 200 and len(listed.json()) == len(provider_dataset("google")["groups"])


def test_the_apps_group_endpoint_overrides_the_datasets_and_can_change_while_serving() -> None:
    app = create_app({**provider_dataset("personio"), "group_endpoint": "listed"}, group_endpoint="unsupported")
    with running_simulator(app) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        overridden = client.get(GROUPS)
        app.state.simulator.group_endpoint = None  # the dataset's own again
        own = client.get(GROUPS)
    assert overridden.status_code == 501
    assert own.status_code == 200 and {g["id"] for g in own.json()} >= {"1001", "2001", "3001"}


def test_a_dataset_file_carries_its_provider_and_group_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "personio.json"
    path.write_text(json.dumps(generate_dataset(30, seed=4, provider="personio", group_endpoint="empty")))
    with served(path) as client:
        assert client.get(GROUPS).json() == []
        assert client.get("/unified/connection/conn-demo").json()["integration_type"] == "personio"
        path.write_text(json.dumps(generate_dataset(30, seed=4, provider="personio")) + " ")  # another size
        assert client.get(GROUPS).status_code == 501


def test_listed_groups_keeps_the_first_name_and_skips_what_is_no_group() -> None:
    employees: list[Any] = [
        {"id": "1", "groups": [{"id": "1001", "name": "Sales", "type": "DEPARTMENT"}]},
        {"id": "2", "groups": [{"id": "1001", "name": "Sales DACH", "type": "DEPARTMENT"}, "x", {"id": 7}]},
        "not a record",
        {"id": "3"},
    ]
    assert listed_groups(employees) == [{"id": "1001", "name": "Sales", "type": "DEPARTMENT"}]


# ---- google -----------------------------------------------------------------------------------------


def _assert_google_shape(employees: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
    assert all(GOOGLE_ID.match(record["id"]) for record in employees + groups)
    assert len({record["id"] for record in employees + groups}) == len(employees) + len(groups)
    assert {g["type"] for g in groups} == {"GROUP"}
    by_id = {g["id"]: g for g in groups}
    for g in groups:  # nesting by parent_id, and no cycle
        seen, node = set(), g
        while node.get("parent_id"):
            assert node["id"] not in seen
            seen.add(node["id"])
            node = by_id[node["parent_id"]]
    assert any(g.get("parent_id") and by_id[g["parent_id"]].get("parent_id") for g in groups)  # two deep
    assert {u for g in groups for u in g["user_ids"]} <= {e["id"] for e in employees}
    for e in employees:
        assert e["emails"][0]["type"] == "WORK"
        assert [m["type"] for m in e["emails"]].count("WORK") == 1
    assert {"ACTIVE", "INACTIVE"} == {e["employment_status"] for e in employees}  # suspended or archived
    assert not any("terminated_at" in e for e in employees)


@pytest.mark.parametrize("data", [generate_dataset(600, seed=8, provider="google"), provider_dataset("google")])
def test_google_is_served_with_21_digit_ids_nested_groups_and_inactive_suspended_users(data: dict[str, Any]) -> None:
    with served(data) as client:
        employees = read_all(client, EMPLOYEES)
        groups = read_all(client, GROUPS)
        connection = client.get("/unified/connection/conn-demo").json()
    assert connection["integration_type"] == INTEGRATION_TYPES["google"]
    _assert_google_shape(employees, groups)
    assert not any("groups" in e for e in employees)


@pytest.mark.parametrize(
    "data",
    [
        generate_dataset(200, seed=8, provider="google", embedded_groups=True),
        provider_dataset("google", embedded_groups=True),
    ],
)
def test_google_with_embedded_groups_lists_each_users_direct_groups_too(data: dict[str, Any]) -> None:
    with served(data) as client:
        employees = read_all(client, EMPLOYEES)
        groups = read_all(client, GROUPS)
    _assert_google_shape(employees, groups)
    embedded = {(e["id"], g["id"]) for e in employees for g in e["groups"]}
    listed = {(u, g["id"]) for g in groups for u in g["user_ids"]}
    assert embedded == listed and embedded


# ---- determinism and wrong values -------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["entra", "personio", "google"])
def test_generated_tenants_are_deterministic_per_seed(provider: str) -> None:
    first = generate_dataset(300, seed=5, provider=provider)
    assert json.dumps(first) == json.dumps(generate_dataset(300, seed=5, provider=provider))
    assert generate_dataset(300, seed=6, provider=provider) != first
    assert provider_dataset(provider) == provider_dataset(provider)


@pytest.mark.parametrize("provider", ["personio", "google"])
def test_each_shape_scales_to_large_tenants_with_unique_ids(provider: str) -> None:
    data = generate_dataset(30_000, seed=1, provider=provider)
    ids = [e["id"] for e in data["employees"]] + [g["id"] for g in data["groups"]]
    assert len(set(ids)) == len(ids)
    assert len(data["employees"]) == 30_000


def test_unknown_provider_or_group_endpoint_is_one_clear_sentence() -> None:
    with pytest.raises(ValueError, match=r"^The provider is 'okta'; choose one of entra, personio, google\.$"):
        generate_dataset(3, seed=1, provider="okta")
    with pytest.raises(ValueError, match=r"is 'sometimes'; choose one of listed, unsupported, empty\.$"):
        create_app(generate_dataset(3, seed=1), group_endpoint="sometimes")
    with pytest.raises(DatasetError, match=r"^The dataset's 'group_endpoint' is 'never'; choose one of listed"):
        SimulatorSource({"employees": [], "group_endpoint": "never"})
    with pytest.raises(DatasetError, match=r"^The dataset's 'provider' is 'workday'; choose one of entra"):
        SimulatorSource({"employees": [], "provider": "workday"})
    with pytest.raises(DatasetError, match=r"has neither 'employees' nor 'groups'"):
        SimulatorSource({"provider": "personio"})
    with pytest.raises(ValueError, match="embedded_groups applies to the google shape only"):
        generate_dataset(3, seed=1, provider="personio", embedded_groups=True)
    assert GROUP_ENDPOINTS == ("listed", "unsupported", "empty")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--group-endpoint", "sometimes"],
            "Unknown --group-endpoint 'sometimes'; choose one of listed, unsupported, empty.",
        ),
        (["--provider", "okta"], "Unknown provider 'okta'; choose one of entra, personio, google."),
        (["--embedded-groups"], "--embedded-groups shapes a generated google tenant"),
    ],
)
def test_the_simulator_command_refuses_an_unknown_value_in_one_sentence(args: list[str], said: str) -> None:
    result = CliRunner().invoke(cli_app, ["simulator", "--port", "0", *args])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # refused, not crashed
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and said in line
    assert "listening" not in result.stdout


# ---- the real command -------------------------------------------------------------------------------


@pytest.mark.slow  # a real process
def test_provision_simulator_provider_personio_serves_personios_shape_over_http(tmp_path: Path) -> None:
    out = tmp_path / "simulator.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [
                provision_command(),
                "simulator",
                "--provider",
                "personio",
                "--port",
                "0",
                "--users",
                "300",
                "--seed",
                "3",
            ],
            env=clean_env(tmp_path),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        line = out.read_text()
        assert "personio" in line and "/hris/group unsupported" in line
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert url is not None, line
        with httpx.Client(base_url=url[1], headers=AUTH) as client:
            for _ in range(100):  # it binds the port a moment after the line
                try:
                    groups = client.get(GROUPS)
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
            employees = read_all(client, EMPLOYEES)
            connection = client.get("/unified/connection/conn-demo").json()
    finally:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C
        proc.wait(30)
    assert (groups.status_code, groups.json()) == (501, PERSONIO_501)
    assert len(employees) == 300
    _assert_personio_employees(employees)
    assert employees == generate_dataset(300, seed=3, provider="personio")["employees"]  # the same tenant
    assert connection["integration_type"] == INTEGRATION_TYPES["personio"]
