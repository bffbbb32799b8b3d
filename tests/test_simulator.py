"""The Unified.to simulator speaks the wire format of upstream-apis.md section 1 (in-process, via ASGITransport)."""

from __future__ import annotations

import json
import os
import time
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from simulator import Fault, FaultPlan, SimulatorSource, create_app, edge_case_dataset, generate_dataset
from simulator import serve as serve_module
from simulator.generator import ascii_fold
from simulator.serve import running_simulator

AUTH = {"Authorization": "Bearer sim-token"}
EMPLOYEES = "/hris/conn-demo/employee"
GROUPS = "/hris/conn-demo/group"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


@pytest.fixture
async def sim250() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(create_app(generate_dataset(250, seed=7))) as client:
        yield client


# ---- paging ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_limit_and_offset_accept_floats_as_the_sdk_sends_them(sim250: httpx.AsyncClient) -> None:
    # why: the official SDK serializes the OpenAPI `number` type as `limit=100.0&offset=0.0`
    r = await sim250.get(EMPLOYEES, params={"limit": "100.0", "offset": "200.0"}, headers=AUTH)
    assert r.status_code == 200
    assert len(r.json()) == 50


@pytest.mark.anyio
async def test_list_is_a_bare_array_with_total_count_header(sim250: httpx.AsyncClient) -> None:
    r = await sim250.get(EMPLOYEES, headers=AUTH)
    assert isinstance(r.json(), list)
    assert r.headers["X-Total-Count"] == "250"
    assert len(r.json()) == 100  # default page size


@pytest.mark.anyio
async def test_limit_is_capped_at_100(sim250: httpx.AsyncClient) -> None:
    r = await sim250.get(EMPLOYEES, params={"limit": "500"}, headers=AUTH)
    assert len(r.json()) == 100


@pytest.mark.anyio
@pytest.mark.parametrize("users", [0, 100, 200])
async def test_exact_multiple_of_the_page_size_ends_with_an_empty_page(users: int) -> None:
    # why: "fewer than limit" is the only end signal; at exact multiples the last page is []
    async with _client(create_app(generate_dataset(users, seed=1))) as client:
        seen: list[Any] = []
        offset = 0
        pages = 0
        while True:
            page = (await client.get(EMPLOYEES, params={"limit": 100, "offset": offset}, headers=AUTH)).json()
            pages += 1
            seen.extend(page)
            if len(page) < 100:
                break
            offset += 100
    assert page == []
    assert pages == users // 100 + 1
    assert len({e["id"] for e in seen}) == users


@pytest.mark.anyio
@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "nan", "inf"])
async def test_non_numeric_or_negative_paging_parameters_are_a_400(sim250: httpx.AsyncClient, bad: str) -> None:
    for param in ("limit", "offset"):
        r = await sim250.get(EMPLOYEES, params={param: bad}, headers=AUTH)
        assert r.status_code == 400
        assert r.json()["statusCode"] == 400
        assert r.json()["error"] == "Bad Request"


# ---- fields -------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "params",
    [
        [("fields", "emails"), ("fields", "first_name")],  # SDK: repeated keys
        [("fields", "emails,first_name")],  # CLI: one comma-separated value
    ],
)
async def test_fields_returns_only_those_fields_and_always_the_id(
    sim250: httpx.AsyncClient, params: list[tuple[str, str]]
) -> None:
    r = await sim250.get(EMPLOYEES, params=params, headers=AUTH)
    assert {frozenset(rec) for rec in r.json()} == {frozenset({"id", "emails", "first_name"})}


@pytest.mark.anyio
async def test_without_fields_the_full_wire_record_is_served(sim250: httpx.AsyncClient) -> None:
    # why: the client's dropping of unneeded (personal) fields only means something if they arrive
    rec = (await sim250.get(EMPLOYEES, headers=AUTH)).json()[0]
    assert {"date_of_birth", "telephones", "title", "hired_at", "employment_type"} <= set(rec)


# ---- auth and errors ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("header", ["Bearer sim-token", "bearer sim-token", "BEARER sim-token", "sim-token"])
async def test_token_is_accepted_with_any_case_of_bearer_or_bare(sim250: httpx.AsyncClient, header: str) -> None:
    # why: the Unified CLI sends lowercase "bearer", the Speakeasy SDK sends the token verbatim
    r = await sim250.get(GROUPS, headers={"Authorization": header})
    assert r.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}])
async def test_missing_or_wrong_token_is_a_401_with_the_error_envelope(
    sim250: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await sim250.get(EMPLOYEES, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"statusCode": 401, "message": "Unauthorized", "error": "Unauthorized"}


@pytest.mark.anyio
async def test_unknown_connection_is_a_404(sim250: httpx.AsyncClient) -> None:
    r = await sim250.get("/hris/conn-other/employee", headers=AUTH)
    assert r.status_code == 404
    assert r.json()["statusCode"] == 404


@pytest.mark.anyio
async def test_get_by_id_returns_the_record_and_404_when_unknown(sim250: httpx.AsyncClient) -> None:
    first = (await sim250.get(GROUPS, headers=AUTH)).json()[0]
    r = await sim250.get(f"{GROUPS}/{first['id']}", headers=AUTH)
    assert r.json() == first
    missing = await sim250.get(f"{EMPLOYEES}/nobody", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"] == "Not Found"


# ---- faults and latency -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_scripted_429_carries_unifieds_message_and_retry_after_then_is_consumed() -> None:
    plan = FaultPlan([Fault(status=429, retry_after="2")])
    async with _client(create_app(generate_dataset(5, seed=1), faults=plan)) as client:
        first = await client.get(EMPLOYEES, headers=AUTH)
        second = await client.get(EMPLOYEES, headers=AUTH)
    assert first.status_code == 429
    assert first.json() == {
        "statusCode": 429,
        "message": "Too many requests to Unified.to",
        "error": "Too Many Requests",
    }
    assert first.headers["Retry-After"] == "2"
    assert second.status_code == 200
    assert plan.pending == 0


@pytest.mark.anyio
async def test_a_fault_for_one_path_kind_leaves_the_other_alone() -> None:
    plan = FaultPlan([Fault(status=503, kind="group")])
    async with _client(create_app(generate_dataset(5, seed=1), faults=plan)) as client:
        employees = await client.get(EMPLOYEES, headers=AUTH)
        groups = await client.get(GROUPS, headers=AUTH)
    assert (employees.status_code, groups.status_code) == (200, 503)


@pytest.mark.anyio
async def test_a_fault_can_send_a_malformed_body() -> None:
    plan = FaultPlan([Fault(status=200, body="<html>oops</html>")])
    async with _client(create_app(generate_dataset(5, seed=1), faults=plan)) as client:
        r = await client.get(EMPLOYEES, headers=AUTH)
    assert r.status_code == 200
    assert r.text == "<html>oops</html>"


@pytest.mark.anyio
async def test_latency_delays_every_request() -> None:
    async with _client(create_app(generate_dataset(5, seed=1), latency_ms=60)) as client:
        start = time.perf_counter()
        await client.get(EMPLOYEES, headers=AUTH)
        assert time.perf_counter() - start >= 0.05


# ---- dataset file -------------------------------------------------------------------------------


def _write_atomically(path: Path, dataset: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataset, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


@pytest.mark.anyio
async def test_dataset_file_is_reread_after_it_changes(tmp_path: Path) -> None:
    # why: scenarios change the source between two syncs while the simulator keeps running
    path = tmp_path / "tenant.json"
    _write_atomically(path, generate_dataset(3, seed=1))
    async with _client(create_app(path)) as client:
        before = (await client.get(EMPLOYEES, headers=AUTH)).json()
        changed = generate_dataset(5, seed=2)
        _write_atomically(path, changed)
        after = (await client.get(EMPLOYEES, headers=AUTH)).json()
    assert len(before) == 3
    assert after == changed["employees"]


@pytest.mark.anyio
async def test_a_broken_rewrite_keeps_serving_the_previous_data(tmp_path: Path) -> None:
    path = tmp_path / "tenant.json"
    _write_atomically(path, generate_dataset(3, seed=1))
    async with _client(create_app(path)) as client:
        path.write_text('{"employees": [', encoding="utf-8")  # a half-written file
        r = await client.get(EMPLOYEES, headers=AUTH)
    assert r.status_code == 200
    assert len(r.json()) == 3


def test_in_memory_source_can_be_replaced_while_serving() -> None:
    source = SimulatorSource(generate_dataset(2, seed=1))
    app = create_app(source)
    with running_simulator(app) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        assert len(client.get(EMPLOYEES).json()) == 2
        source.replace(generate_dataset(4, seed=1))
        assert len(client.get(EMPLOYEES).json()) == 4


def test_running_simulator_serves_over_real_http_and_stops_on_exit() -> None:
    app = create_app(generate_dataset(3, seed=1))
    with running_simulator(app) as url:
        assert httpx.get(f"{url}{EMPLOYEES}", headers=AUTH).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}{EMPLOYEES}", headers=AUTH)


def test_keep_alive_requests_over_real_http_are_not_held_back_by_nagle() -> None:
    # why: without TCP_NODELAY on accepted sockets every response waited ~40 ms (delayed ACK), which
    # turned a 100k-user extract from 4 s into 45 s
    with running_simulator(create_app(generate_dataset(200, seed=1))) as url, httpx.Client(base_url=url) as client:
        client.get(EMPLOYEES, headers=AUTH)
        start = time.perf_counter()
        for _ in range(30):
            client.get(EMPLOYEES, headers=AUTH)
        assert time.perf_counter() - start < 0.6  # ~0.06 s fixed, ~1.3 s with the bug


def test_run_simulator_command_says_where_it_listens_and_which_credentials_to_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[tuple[Starlette, str, int]] = []
    monkeypatch.setattr(serve_module, "serve", lambda app, host, port: served.append((app, host, port)))
    serve_module.run_simulator_command(port=8123, users=10, seed=1, dataset=None, connection_id="c-1", token="t-1")
    (line,) = capsys.readouterr().out.splitlines()
    assert "http://127.0.0.1:8123" in line
    assert "c-1" in line
    assert "t-1" in line
    assert len(served[0][0].state.simulator.source.current().employee.records) == 10


# ---- generator ----------------------------------------------------------------------------------


def test_generator_is_deterministic_per_seed() -> None:
    assert generate_dataset(300, seed=5) == generate_dataset(300, seed=5)
    assert generate_dataset(300, seed=5) != generate_dataset(300, seed=6)


@pytest.fixture(scope="module")
def tenant() -> dict[str, list[dict[str, Any]]]:
    return generate_dataset(3000, seed=11)


def test_generated_names_carry_umlauts_and_accents(tenant: dict[str, list[dict[str, Any]]]) -> None:
    names = " ".join(e["name"] for e in tenant["employees"])
    for ch in "äöüßéøễ'":
        assert ch in names
    assert not names.isascii()


def test_generated_work_emails_are_ascii_folded_and_unique(tenant: dict[str, list[dict[str, Any]]]) -> None:
    work = [m["email"] for e in tenant["employees"] for m in e["emails"] if m["type"] in ("WORK", "OTHER")]
    assert all(a.isascii() for a in work)
    assert len({a.casefold() for a in work}) == len(work)
    assert ascii_fold("Jürgen") + "." + ascii_fold("Müller") == "juergen.mueller"
    assert ascii_fold("O'Brien") == "obrien"
    assert ascii_fold("Nguyễn") == "nguyen"


def test_generated_tenant_has_home_first_other_only_and_inactive_users(
    tenant: dict[str, list[dict[str, Any]]],
) -> None:
    employees = tenant["employees"]
    types = [[m["type"] for m in e["emails"]] for e in employees]
    assert any(t[0] == "HOME" and "WORK" in t for t in types)  # clients must pick WORK, not the first
    assert any(t == ["OTHER"] for t in types)
    inactive = sum(e["employment_status"] == "INACTIVE" for e in employees)
    assert 0.01 * len(employees) < inactive < 0.06 * len(employees)
    assert any(e["employment_type"] == "CONTRACTOR" for e in employees)
    assert any(e.get("groups") for e in employees)


def test_generated_groups_nest_root_departments_teams_without_cycles(
    tenant: dict[str, list[dict[str, Any]]],
) -> None:
    groups = {g["id"]: g for g in tenant["groups"]}
    roots = [g for g in groups.values() if "parent_id" not in g]
    assert [r["name"] for r in roots] == ["All Staff"]
    depth = {}
    for gid in groups:
        seen, node, d = set(), gid, 0
        while "parent_id" in groups[node]:
            assert node not in seen  # no cycle in the default tenant
            seen.add(node)
            node, d = groups[node]["parent_id"], d + 1
        depth[gid] = d
    assert set(depth.values()) == {0, 1, 2}
    members = [u for g in groups.values() for u in g["user_ids"]]
    assert len(set(members)) == len(tenant["employees"])  # everyone is in exactly one team or department
    assert len(members) == len(tenant["employees"])


def test_group_counts_scale_with_the_tenant() -> None:
    small, large = generate_dataset(100, seed=1), generate_dataset(5000, seed=1)
    assert len(large["groups"]) > 10 * len(small["groups"])


def test_generating_100k_users_takes_seconds_not_minutes() -> None:
    start = time.perf_counter()
    generate_dataset(100_000, seed=3)
    assert time.perf_counter() - start < 5  # ~1 s on a laptop; generous for a loaded CI runner


def test_edge_case_dataset_holds_a_group_cycle_and_nfc_names() -> None:
    data = edge_case_dataset()
    parents = {g["id"]: g.get("parent_id") for g in data["groups"]}
    assert parents["grp-cycle-a"] == "grp-cycle-b"
    assert parents["grp-cycle-b"] == "grp-cycle-a"
    names = [e["name"] for e in data["employees"] if isinstance(e.get("name"), str)]
    assert all(unicodedata.is_normalized("NFC", n) for n in names)
