"""The simulator's connection side speaks Unified.to's authorization flow and Connection API (upstream-apis.md
1.9, 1.9a; design.md "Connecting through Unified.to"): in-process through SyncASGITransport, and once over
real HTTP the way a browser walks it."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from domain.words import INTEGRATION_TYPES
from simulator import Fault, FaultPlan, create_app, generate_dataset
from simulator import serve as serve_module
from simulator.inprocess import SyncASGITransport
from simulator.serve import running_simulator

TOKEN = "sim-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORKSPACE = "ws-sim"
ENTRA = INTEGRATION_TYPES["entra"]
AUTH_URL = f"/unified/integration/auth/{WORKSPACE}/{ENTRA}"
CALLBACK = "https://platform.example/settings/callback?tab=sources"  # the product's callback, with its own query
FAILED = "https://platform.example/settings/failed"
CONNECTION_FIELDS = {
    "id",
    "workspace_id",
    "integration_type",
    "integration_name",
    "categories",
    "permissions",
    "external_xref",
    "environment",
    "is_paused",
    "last_healthy_at",
    "created_at",
    "updated_at",
}


@pytest.fixture
def app() -> Starlette:
    return create_app(generate_dataset(30, seed=4))


@pytest.fixture
def client(app: Starlette) -> Iterator[httpx.Client]:
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://sim") as client:
        yield client


def _sim(app: Starlette) -> Any:
    return app.state.simulator


def _auth_params(**overrides: str) -> dict[str, str]:
    params = {
        "success_redirect": CALLBACK,
        "failure_redirect": FAILED,
        "scopes": "hris_employee_read,hris_group_read",
        "state": "signed.state-value_1",
        "external_xref": "acme",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v != ""}


def _links(page: str) -> dict[str, str]:
    """The page's links by their text, unescaped as a browser would read the attribute."""
    return {text: html.unescape(href) for href, text in re.findall(r'<a href="([^"]*)">([^<]*)</a>', page)}


def _query(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


def _authorize(client: httpx.Client, **params: str) -> str:
    """Walk the sign-in page's Authorize link; the new connection's id."""
    page = client.get(AUTH_URL, params=_auth_params(**params))
    answer = client.get(_links(page.text)["Authorize"])
    assert answer.status_code == 303
    return _query(answer.headers["location"])["id"][0]


# ---- the Connection object ------------------------------------------------------------------------


def test_the_initial_connection_is_served_with_unifieds_fields_and_nothing_secret(client: httpx.Client) -> None:
    r = client.get("/unified/connection/conn-demo", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == CONNECTION_FIELDS  # no `auth`: the real one holds the provider's credentials
    assert body["id"] == "conn-demo"
    assert body["workspace_id"] == WORKSPACE
    assert body["integration_type"] == ENTRA
    assert body["integration_name"] == "Microsoft Entra ID"
    assert body["categories"] == ["hris"]
    assert body["permissions"] == ["hris_employee_read", "hris_group_read"]
    assert body["external_xref"] is None
    assert body["environment"] == "Production"
    assert body["is_paused"] is False
    for stamp in ("last_healthy_at", "created_at", "updated_at"):
        assert body[stamp].endswith("Z")
        datetime.fromisoformat(body[stamp])
    assert TOKEN not in r.text


def test_the_initial_connection_takes_its_integration_type_from_the_provider() -> None:
    app = create_app(generate_dataset(1, seed=1), provider="personio", workspace_id="ws-7", connection_id="c-9")
    (connection,) = _sim(app).connections.values()
    assert connection.wire()["integration_type"] == INTEGRATION_TYPES["personio"]
    assert (connection.id, connection.workspace_id) == ("c-9", "ws-7")
    with pytest.raises(ValueError, match="unknown provider"):
        create_app(generate_dataset(1, seed=1), provider="okta")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/unified/connection/conn-demo"),
        ("DELETE", "/unified/connection/conn-demo"),
        ("GET", "/unified/connection"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_the_connection_api_wants_the_workspace_token(
    app: Starlette, client: httpx.Client, method: str, path: str, headers: dict[str, str]
) -> None:
    r = client.request(method, path, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"statusCode": 401, "message": "Unauthorized", "error": "Unauthorized"}
    assert "conn-demo" in _sim(app).connections  # a refused DELETE deletes nothing


def test_the_connection_api_takes_the_token_bare_as_the_sdk_sends_it(client: httpx.Client) -> None:
    assert client.get("/unified/connection/conn-demo", headers={"Authorization": TOKEN}).status_code == 200


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_an_unknown_connection_is_a_404(client: httpx.Client, method: str) -> None:
    r = client.request(method, "/unified/connection/conn-nobody", headers=AUTH)
    assert r.status_code == 404
    assert r.json()["error"] == "Not Found"


def test_connections_are_listed_by_external_xref_as_a_bare_array(app: Starlette, client: httpx.Client) -> None:
    sim = _sim(app)
    first = sim.add_connection(external_xref="acme")
    second = sim.add_connection(external_xref="acme")
    sim.add_connection(external_xref="other")
    r = client.get("/unified/connection", params={"external_xref": "acme"}, headers=AUTH)
    assert [c["id"] for c in r.json()] == [first.id, second.id]
    assert len(client.get("/unified/connection", headers=AUTH).json()) == 4  # with the initial one


def test_adding_a_connection_with_a_live_id_is_refused(app: Starlette) -> None:
    with pytest.raises(ValueError, match="exists already"):
        _sim(app).add_connection("conn-demo")


# ---- deletion -------------------------------------------------------------------------------------


def test_a_deleted_connection_is_gone_from_the_api_and_from_the_hris_reads(
    app: Starlette, client: httpx.Client
) -> None:
    deleted = client.delete("/unified/connection/conn-demo", headers=AUTH)
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert client.get("/unified/connection/conn-demo", headers=AUTH).status_code == 404
    assert client.get("/hris/conn-demo/employee", headers=AUTH).status_code == 404
    assert client.delete("/unified/connection/conn-demo", headers=AUTH).status_code == 404
    sim = _sim(app)
    assert "conn-demo" in sim.deleted_connections
    assert "conn-demo" not in sim.connections


def test_the_request_log_shows_that_a_delete_reached_the_simulator(app: Starlette, client: httpx.Client) -> None:
    client.get("/hris/conn-demo/employee", headers=AUTH)
    client.delete("/unified/connection/conn-demo", headers=AUTH)
    seen = [(r.kind, r.method, r.path, r.status) for r in _sim(app).requests]
    assert seen == [
        ("employee", "GET", "/hris/conn-demo/employee", 200),
        ("connection", "DELETE", "/unified/connection/conn-demo", 200),
    ]


# ---- HRIS reads per connection -------------------------------------------------------------------


def test_a_paused_connection_answers_the_hris_reads_with_a_403(app: Starlette, client: httpx.Client) -> None:
    # why: Unified pauses a connection over the plan's monthly limit (upstream-apis.md 1.5)
    _sim(app).connections["conn-demo"].is_paused = True
    for path in ("/hris/conn-demo/employee", "/hris/conn-demo/group"):
        r = client.get(path, headers=AUTH)
        assert r.status_code == 403
        assert r.json() == {"statusCode": 403, "message": "Connection is paused", "error": "Forbidden"}
    assert client.get("/unified/connection/conn-demo", headers=AUTH).json()["is_paused"] is True


def test_a_connection_without_the_group_permission_cannot_list_groups(app: Starlette, client: httpx.Client) -> None:
    connection = _sim(app).add_connection(permissions=["hris_employee_read"])
    assert client.get(f"/hris/{connection.id}/employee", headers=AUTH).status_code == 200
    r = client.get(f"/hris/{connection.id}/group", headers=AUTH)
    assert r.status_code == 403
    assert "hris_group_read" in r.json()["message"]


# ---- the authorization flow -----------------------------------------------------------------------


def test_the_sign_in_page_needs_no_token_and_escapes_what_the_caller_sent(client: httpx.Client) -> None:
    hostile = '"><script>alert(1)</script>'
    r = client.get(AUTH_URL, params=_auth_params(external_xref=hostile, state=hostile))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "Sign in to Microsoft Entra ID (simulated)" in r.text
    assert "<script>" not in r.text
    assert html.escape(hostile) in r.text
    assert set(_links(r.text)) == {"Authorize", "Cancel"}


def test_authorize_creates_a_connection_and_goes_back_with_its_id_and_the_state(
    app: Starlette, client: httpx.Client
) -> None:
    state = "tenant=acme&nonce=3f/+x=="  # why: the state must come back byte for byte, however it is encoded
    page = client.get(AUTH_URL, params=_auth_params(state=state, scopes="hris_employee_read"))
    r = client.get(_links(page.text)["Authorize"])
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("https://platform.example/settings/callback?")
    query = _query(location)
    assert query["tab"] == ["sources"]  # the callback's own query is kept
    assert query["state"] == [state]
    (connection_id,) = query["id"]
    assert re.fullmatch(r"conn-[0-9a-f]{16}", connection_id)
    body = client.get(f"/unified/connection/{connection_id}", headers=AUTH).json()
    assert body["workspace_id"] == WORKSPACE
    assert body["integration_type"] == ENTRA
    assert body["permissions"] == ["hris_employee_read"]
    assert body["external_xref"] == "acme"
    assert body["is_paused"] is False
    assert connection_id in _sim(app).connections


def test_the_authorized_connection_serves_the_same_employees(client: httpx.Client) -> None:
    connection_id = _authorize(client)
    mine = client.get(f"/hris/{connection_id}/employee", headers=AUTH)
    assert mine.status_code == 200
    assert mine.json() == client.get("/hris/conn-demo/employee", headers=AUTH).json()


@pytest.mark.parametrize("scopes", [[], [("scopes", "")]])
def test_no_scopes_asks_for_all_hris_read_permissions(client: httpx.Client, scopes: list[tuple[str, str]]) -> None:
    params = [(k, v) for k, v in _auth_params().items() if k != "scopes"] + scopes
    page = client.get(f"{AUTH_URL}?{urlencode(params)}")
    connection_id = _query(client.get(_links(page.text)["Authorize"]).headers["location"])["id"][0]
    permissions = client.get(f"/unified/connection/{connection_id}", headers=AUTH).json()["permissions"]
    assert permissions == ["hris_employee_read", "hris_group_read"]


def test_scopes_may_also_come_repeated_as_the_sdk_sends_a_list(client: httpx.Client) -> None:
    params = [(k, v) for k, v in _auth_params().items() if k != "scopes"]
    params += [("scopes", "hris_group_read"), ("scopes", "hris_employee_read")]
    page = client.get(f"{AUTH_URL}?{urlencode(params)}")
    connection_id = _query(client.get(_links(page.text)["Authorize"]).headers["location"])["id"][0]
    permissions = client.get(f"/unified/connection/{connection_id}", headers=AUTH).json()["permissions"]
    assert permissions == ["hris_group_read", "hris_employee_read"]


def test_cancel_goes_to_the_failure_redirect_with_an_error_and_the_state(app: Starlette, client: httpx.Client) -> None:
    page = client.get(AUTH_URL, params=_auth_params())
    r = client.get(_links(page.text)["Cancel"])
    assert r.status_code == 303
    assert r.headers["location"].startswith(FAILED + "?")
    query = _query(r.headers["location"])
    assert query == {"error": ["access_denied"], "state": ["signed.state-value_1"]}
    assert list(_sim(app).connections) == ["conn-demo"]  # nothing was created


def test_without_a_failure_redirect_a_cancel_goes_back_to_the_success_redirect_without_an_id(
    client: httpx.Client,
) -> None:
    page = client.get(AUTH_URL, params=_auth_params(failure_redirect=""))
    query = _query(client.get(_links(page.text)["Cancel"]).headers["location"])
    assert query["error"] == ["access_denied"]
    assert "id" not in query


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        (f"/unified/integration/auth/ws-other/{ENTRA}", _auth_params(), 404),
        (f"/unified/integration/auth/{WORKSPACE}/okta", _auth_params(), 404),
        (AUTH_URL, _auth_params(success_redirect=""), 400),
        (f"{AUTH_URL}/authorize", _auth_params(success_redirect=""), 400),
    ],
)
def test_the_auth_url_refuses_another_workspace_an_unknown_integration_and_no_success_redirect(
    app: Starlette, client: httpx.Client, path: str, params: dict[str, str], status: int
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    assert list(_sim(app).connections) == ["conn-demo"]


def test_an_unknown_workspace_is_echoed_escaped(client: httpx.Client) -> None:
    r = client.get("/unified/integration/auth/<img src=x onerror=alert(1)>/microsoftentraid", params=_auth_params())
    assert r.status_code == 404
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.text
    assert "<img" not in r.text


# ---- the settable outcome and the next connection -------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "goes_to", "error"),
    [
        ("authorize", CALLBACK.split("?")[0], None),
        ("cancel", FAILED, "access_denied"),
        ("error", FAILED, "authorization_failed"),
    ],
)
def test_a_set_outcome_redirects_straight_back_without_the_page(
    app: Starlette, client: httpx.Client, outcome: str, goes_to: str, error: str | None
) -> None:
    _sim(app).auth_outcome = outcome
    r = client.get(AUTH_URL, params=_auth_params())
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.split("?")[0] == goes_to
    query = _query(location)
    assert query["state"] == ["signed.state-value_1"]
    assert query.get("error") == ([error] if error else None)
    assert ("id" in query) == (outcome == "authorize")
    assert len(_sim(app).connections) == (2 if outcome == "authorize" else 1)


def test_create_app_can_start_with_the_outcome_set_for_headless_use() -> None:
    app = create_app(generate_dataset(1, seed=1), auth_outcome="authorize")
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://sim") as client:
        r = client.get(AUTH_URL, params=_auth_params())
    assert r.status_code == 303
    assert "id" in _query(r.headers["location"])


def test_the_next_connection_can_lack_a_permission_be_paused_or_be_of_another_provider(
    app: Starlette, client: httpx.Client
) -> None:
    # why: the product's callback must refuse each of these (design.md, "Connecting through Unified.to")
    sim = _sim(app)
    sim.set_next_connection(
        id="conn-odd", permissions=["hris_employee_read"], is_paused=True, integration_type=INTEGRATION_TYPES["google"]
    )
    assert _authorize(client) == "conn-odd"
    body = client.get("/unified/connection/conn-odd", headers=AUTH).json()
    assert body["permissions"] == ["hris_employee_read"]
    assert body["is_paused"] is True
    assert (body["integration_type"], body["integration_name"]) == (INTEGRATION_TYPES["google"], "Google Workspace")
    assert client.get("/hris/conn-odd/employee", headers=AUTH).status_code == 403
    # used once: the connection after it is what the authorization asked for
    plain = client.get(f"/unified/connection/{_authorize(client)}", headers=AUTH).json()
    assert (plain["integration_type"], plain["is_paused"]) == (ENTRA, False)
    assert plain["permissions"] == ["hris_employee_read", "hris_group_read"]


def test_the_next_connection_may_have_no_permissions_at_all(app: Starlette, client: httpx.Client) -> None:
    _sim(app).set_next_connection(permissions=[])
    connection_id = _authorize(client)
    assert client.get(f"/unified/connection/{connection_id}", headers=AUTH).json()["permissions"] == []


# ---- the request log and faults ------------------------------------------------------------------


def test_the_auth_flow_is_logged_as_auth_requests(app: Starlette, client: httpx.Client) -> None:
    _authorize(client)
    seen = [(r.kind, r.path, r.status) for r in _sim(app).requests]
    assert seen == [("auth", AUTH_URL, 200), ("auth", f"{AUTH_URL}/authorize", 303)]


def test_a_fault_for_any_kind_leaves_the_connection_api_alone_and_one_aimed_at_it_hits_it() -> None:
    # why: fault plans written for the HRIS reads must keep meaning what they meant
    plan = FaultPlan([Fault(status=503), Fault(status=429, kind="connection")])
    app = create_app(generate_dataset(1, seed=1), faults=plan)
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://sim", headers=AUTH) as client:
        assert client.get("/unified/connection/conn-demo").status_code == 429
        assert client.get("/unified/connection/conn-demo").status_code == 200
        assert client.get("/hris/conn-demo/employee").status_code == 503
    assert plan.pending == 0


# ---- over real HTTP, and the command -------------------------------------------------------------


def test_a_browser_walks_the_flow_over_real_http_and_the_new_connection_reads_employees() -> None:
    app = create_app(generate_dataset(12, seed=2))
    with running_simulator(app) as url, httpx.Client(base_url=url) as browser:
        page = browser.get(AUTH_URL, params=_auth_params())
        back = browser.get(_links(page.text)["Authorize"])
        connection_id = _query(back.headers["location"])["id"][0]
        employees = browser.get(f"/hris/{connection_id}/employee", headers=AUTH)
        assert employees.status_code == 200
        assert len(employees.json()) == 12
        assert browser.delete(f"/unified/connection/{connection_id}", headers=AUTH).status_code == 200
        assert browser.get(f"/hris/{connection_id}/employee", headers=AUTH).status_code == 404


def test_run_simulator_command_passes_the_workspace_provider_and_outcome_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[Starlette] = []
    monkeypatch.setattr(serve_module, "serve", lambda app, host, port: served.append(app))
    serve_module.run_simulator_command(
        port=8123, users=3, connection_id="c-1", workspace_id="ws-9", provider="google", auth_outcome="cancel"
    )
    sim = _sim(served[0])
    assert (sim.workspace_id, sim.auth_outcome) == ("ws-9", "cancel")
    assert sim.connections["c-1"].integration_type == INTEGRATION_TYPES["google"]
    (line,) = capsys.readouterr().out.splitlines()
    assert "ws-9" in line
    assert INTEGRATION_TYPES["google"] in line
