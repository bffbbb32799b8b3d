"""The settings page as a person sees it, in headless Chromium: the whole flow from sign-in to disconnect
against the simulator on SQLite, what one tenant's admin can reach of another's, and forms without their
CSRF token. Every step is a screenshot, written to `.screenshots/<test>/` when a test fails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from store.db import make_engine
from store.models import ConnectState, Integration, Run
from store.repo import add_employee
from tests.browser import Browser, chromium
from tests.services import Service, admin_service
from tests.upstreams import TOKEN
from tests.wire import dataset, group, person

pytestmark = pytest.mark.usefixtures("prefect_api")

STAFF = [person(f"u{i}", f"person{i}@acme.example", "Anna", f"Nummer{i}") for i in range(6)]
GROUPS = [
    group("g-root", "Company", []),
    group("g-ops", "Operations", [p["id"] for p in STAFF[:4]], parent="g-root"),
    group("g-sales", "Sales", [p["id"] for p in STAFF[4:]], parent="g-root"),
    group("g-other", "Contractors", ["x1"]),
]
SOURCE = dataset([*STAFF, person("x1", "outsider@acme.example")], GROUPS)


@pytest.fixture
def sqlite_engine(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("PROVISIONING_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def service(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    with admin_service(sqlite_engine, SOURCE) as served:
        yield served


@pytest.fixture
def browser(service: Service, request: pytest.FixtureRequest) -> Iterator[Browser]:
    with chromium(service.url, request) as person_at_the_page:
        yield person_at_the_page


def sign_in(browser: Browser, key: str) -> None:
    """With the keyboard: the key field has the focus when the page opens; Enter submits."""
    from selenium.webdriver.common.keys import Keys

    browser.open("/ui")
    browser.step("sign-in page")
    assert browser.driver.switch_to.active_element.get_attribute("id") == "key"
    browser.driver.switch_to.active_element.send_keys(key + Keys.ENTER)
    browser.wait_for(lambda: "/ui/t/" in browser.driver.current_url, what="the tenant's page")


def rows(browser: Browser, table: str) -> list[Any]:
    return [row for row in browser.all(f"#{table} tbody tr") if row.is_displayed()]


def cells_of(row: Any) -> list[str]:
    return [cell.text for cell in row.find_elements("css selector", "td")]


def employee_rows(browser: Browser) -> dict[str, dict[str, str]]:
    """Email -> what the row shows: status (by its icon's class), dot colour, the reason."""
    shown: dict[str, dict[str, str]] = {}
    for row in rows(browser, "employees"):
        cells = row.find_elements("css selector", "td")
        icon = cells[0].find_element("css selector", ".status")
        dots = icon.find_elements("css selector", ".dot")
        shown[cells[2].text] = {
            "status": row.get_attribute("data-status"),
            "icon": (icon.get_attribute("class") or "").replace("status ", ""),
            "dot": dots[0].value_of_css_property("background-color") if dots else "",
            "flag": "⚑" if icon.find_elements("css selector", ".flag") else "",
            "reason": cells[3].text,
        }
    return shown


def run_to_its_end(browser: Browser) -> str:
    browser.wait_for(lambda: "/runs/" in browser.driver.current_url, what="the run's page")
    browser.step("run in progress")
    browser.wait_for(
        lambda: browser.find("#outcome").text not in ("queued", "running") and not browser.all("#progress"),
        timeout=120,
        what="the run to end",
    )
    browser.step("run ended")
    return str(browser.find("#outcome").text)


def counts(browser: Browser) -> dict[str, int]:
    return {cell.get_attribute("data-count"): int(cell.text) for cell in browser.all("[data-count]")}


GREEN, RED = "rgba(28, 140, 74, 1)", "rgba(198, 43, 43, 1)"


def test_an_admin_clicks_through_connect_filter_save_and_sync_employees_history_and_disconnect(
    service: Service, browser: Browser
) -> None:
    from selenium.webdriver.common.keys import Keys

    add_employee(service.engine, "acme", email="PERSON0@acme.example", first_name="Alt", last_name="Name")
    add_employee(service.engine, "acme", email="gone@acme.example", first_name="Gone", last_name="Away")
    sign_in(browser, service.keys["acme"])
    assert "Configure HRIS / Directory Integration" in browser.text()
    assert "Connect a provider" in browser.text()
    browser.step("not connected")

    # Connect: the provider's sign-in (the simulator's page), and back.
    browser.find("input[name=provider][value=entra]").click()
    connect = browser.press_tab_until(lambda el: el.text == "Connect")
    connect.send_keys(Keys.ENTER)
    browser.wait_for(lambda: "(simulated)" in browser.text("body"), what="the provider's sign-in page")
    browser.step("provider sign-in")
    browser.link("Authorize").click()
    browser.wait_for(lambda: browser.all("#provider"), what="the connected page")
    browser.step("connected")
    assert "Connected to Microsoft Entra ID" in browser.text()
    assert browser.find("#provider").text == "Microsoft Entra ID"

    # The group list is the one the connect read; read it again on request.
    listings = sum(1 for seen in service.simulator.requests if seen.kind == "employee")
    browser.button("Read the group list again").click()
    browser.wait_for(lambda: "read from the source just now" in browser.text(), what="the group list read again")
    assert sum(1 for seen in service.simulator.requests if seen.kind == "employee") > listings

    # Filter settings: every flattened group with its kind, parent and member count; the search box narrows.
    listed = {cells[1]: cells[2:] for cells in (cells_of(r) for r in rows(browser, "groups"))}
    assert listed == {
        "Company": ["Team", "", "6"],
        "Operations": ["Team", "Company", "4"],
        "Sales": ["Team", "Company", "2"],
        "Contractors": ["Team", "", "1"],
    }
    here = browser.driver.current_url
    browser.find("#group-search").send_keys("oper" + Keys.ENTER)  # Enter filters; it does not save
    assert [r.find_element("css selector", "label").text for r in rows(browser, "groups")] == ["Operations"]
    assert browser.driver.current_url == here and "Settings saved." not in browser.text()
    browser.step("group search")
    browser.find("#group-search").clear()
    browser.find("#group-search").send_keys(" ")  # an input event with an empty needle shows every row again
    browser.wait_for(lambda: len(rows(browser, "groups")) == 4, what="all groups shown again")
    company = browser.find("input[name=group][value=g-root]")
    company.send_keys(Keys.SPACE)  # a checkbox ticked with the keyboard
    assert company.is_selected()
    browser.find("input[name=schedule][value=every]").click()
    hours = browser.find("#hours")
    hours.clear()
    hours.send_keys("12")
    browser.step("filter settings chosen")
    browser.button("Save and Sync").click()

    assert run_to_its_end(browser) == "succeeded"
    shown = counts(browser)
    assert (shown["created"], shown["linked"], shown["non_matching"]) == (5, 1, 1), shown
    assert "gone@acme.example" in browser.text("#changes")

    # The employee list: green dot on a link for synced, a flag with the reason for non_matching.
    browser.link("Employees").click()
    browser.wait_for(lambda: browser.all("#employees"), what="the employee list")
    browser.step("employees")
    people = employee_rows(browser)
    assert len(people) == 7
    assert people["person3@acme.example"]["icon"] == "status-synced" and people["person3@acme.example"]["dot"] == GREEN
    gone = people["gone@acme.example"]
    assert gone["status"] == "non_matching" and gone["flag"] == "⚑" and gone["dot"] == ""
    assert gone["reason"] == "never matched: no source user has its email"

    # Filter by status and search.
    from selenium.webdriver.support.ui import Select

    Select(browser.find("#status")).select_by_visible_text("Not in the source")
    browser.button("Show").click()
    browser.wait_for(lambda: "status=non_matching" in browser.driver.current_url, what="the filtered list")
    assert list(employee_rows(browser)) == ["gone@acme.example"]
    Select(browser.find("#status")).select_by_visible_text("All")
    browser.find("#q").send_keys("person4" + Keys.ENTER)
    browser.wait_for(lambda: "q=person4" in browser.driver.current_url, what="the search")
    assert list(employee_rows(browser)) == ["person4@acme.example"]
    browser.step("search")

    # Delete the flagged one, after confirming.
    browser.open("/ui/t/acme/employees?status=non_matching")
    browser.find("a[aria-label='Delete gone@acme.example']").click()
    browser.wait_for(lambda: "Delete this employee?" in browser.text(), what="the confirmation")
    browser.step("confirm delete")
    browser.button("Delete employee").click()
    browser.wait_for(lambda: "The employee was deleted." in browser.text(), what="the deletion")
    remaining = employee_rows(browser)
    assert "gone@acme.example" not in remaining and len(remaining) == 6
    browser.step("deleted")

    # The schedule was saved with the groups; a person disabled at the source turns red after Sync now.
    browser.link("Integration").click()
    browser.wait_for(lambda: browser.all("#settings"), what="the settings")
    assert (
        browser.find("input[name=schedule][value=every]").is_selected()
        and browser.find("#hours").get_attribute("value") == "12"
    )
    assert browser.find("input[name=group][value=g-root]").is_selected()
    # When someone leaves: make them inactive for trainings (the deprovisioning policy), saved on its own.
    assert browser.find("input[name=policy][value=flag]").is_selected()
    browser.find("input[name=policy][value=deactivate]").click()
    browser.button("Save").click()
    browser.wait_for(lambda: "Settings saved." in browser.text(), what="the saved policy")
    assert browser.find("input[name=policy][value=deactivate]").is_selected()
    assert browser.find("input[name=group][value=g-root]").is_selected()  # the rest of the form kept
    browser.driver.execute_script("document.getElementById('policy').scrollIntoView()")
    browser.step("policy saved")
    service.upstream.source.replace(
        dataset(
            [
                *STAFF[:4],
                {**STAFF[4], "terminated_at": "2031-03-31T00:00:00Z"},  # leaving: the end date ahead, still synced
                person("u5", "person5@acme.example", "Anna", "Nummer5", active=False),
            ],
            GROUPS,
        )
    )
    browser.button("Sync now").click()
    assert run_to_its_end(browser) == "succeeded"
    assert counts(browser)["terminated"] == 1
    browser.open("/ui/t/acme/employees?status=terminated")
    terminated = employee_rows(browser)["person5@acme.example"]
    assert terminated["icon"] == "status-terminated" and terminated["dot"] == RED
    assert terminated["reason"] == "disabled or terminated in the source; inactive for the platform"
    browser.step("terminated")
    browser.open("/ui/t/acme/employees?q=person4")
    leaving = rows(browser, "employees")[0].find_elements("css selector", "td")
    assert (
        leaving[1].text == "Anna Nummer4 leaves 2031-03-31"
        and employee_rows(browser)["person4@acme.example"]["icon"] == "status-synced"
    )
    browser.step("leaving")

    # Run history, and one run's changes.
    browser.link("Sync history").click()
    browser.wait_for(lambda: browser.all("#runs"), what="the run history")
    history = rows(browser, "runs")
    assert len(history) == 2 and all("succeeded" in row.text for row in history)
    browser.step("history")
    history[-1].find_element("css selector", "a").click()
    browser.wait_for(lambda: browser.all("#changes"), what="the first run's changes")
    assert "created" in browser.text("#changes") and "person1@acme.example" in browser.text("#changes")

    # Disconnect: confirmed, says the employees stay; the connection is deleted at Unified.to.
    browser.link("Integration").click()
    browser.wait_for(lambda: browser.all("#settings"), what="the settings")
    browser.link("Disconnect").click()
    browser.wait_for(lambda: "Disconnect the integration?" in browser.text(), what="the confirmation")
    assert "Your employees stay" in browser.text()
    browser.step("confirm disconnect")
    browser.button("Disconnect").click()
    browser.wait_for(lambda: browser.all("#disconnected"), what="the disconnection")
    browser.step("disconnected")
    assert "Disconnected. Your 6 employees stay on the platform" in browser.text("#disconnected")
    assert "Connect a provider" in browser.text()
    deleted = [
        (s.method, s.path) for s in service.simulator.requests if s.kind == "connection" and s.method == "DELETE"
    ]
    assert len(deleted) == 1


def test_an_admin_of_one_tenant_cannot_reach_another_and_a_form_without_its_token_changes_nothing(
    service: Service, browser: Browser
) -> None:
    sign_in(browser, service.keys["acme"])

    for path in ("/ui/t/globex", "/ui/t/globex/employees", "/ui/t/globex/runs", "/ui/t/nobody"):
        browser.open(path)
        browser.step(f"reach {path}")
        assert "Unknown tenant" in browser.text(".error"), path
        assert browser.link("Employees").get_attribute("href").endswith("/ui/t/acme/employees")  # links lead home

    # A form of acme's page pointed at globex (acme's own token included): the API refuses, nothing runs.
    browser.open("/ui/t/acme")
    browser.driver.execute_script(
        "document.querySelector('form[action$=\"/connect\"]').setAttribute('action', '/ui/t/globex/connect')"
    )
    browser.button("Connect").click()
    browser.wait_for(lambda: browser.all(".error"), what="the refusal")
    browser.step("form edited to globex")
    assert "Unknown tenant 'globex'." in browser.text(".error")

    # Forms without their CSRF token: refused with the sentence, nothing changed or started.
    browser.open("/ui/t/acme")
    browser.driver.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    browser.button("Connect").click()
    browser.wait_for(lambda: browser.all(".error"), what="the refusal")
    browser.step("connect without token")
    assert "security token" in browser.text(".error")
    with service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ConnectState)).scalar() == 0  # no flow was begun

    # The session cookie: HttpOnly, SameSite=Strict; signing out ends it for every copy of it.
    browser.open("/ui/t/acme")
    cookie = browser.driver.get_cookie("provisioning_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    session_key = cookie["value"]
    with httpx.Client(base_url=service.url) as copy:
        assert copy.get("/tenants/acme", headers={"Authorization": f"Bearer {session_key}"}).status_code == 200
        assert copy.get("/tenants/globex", headers={"Authorization": f"Bearer {session_key}"}).status_code == 404
        browser.button("Sign out").click()
        browser.wait_for(lambda: "You are signed out." in browser.text(), what="the sign-out")
        browser.step("signed out")
        assert copy.get("/tenants/acme", headers={"Authorization": f"Bearer {session_key}"}).status_code == 401
        stolen = copy.get("/ui/t/acme", headers={"Cookie": f"provisioning_session={session_key}"})
        assert stolen.status_code == 303 and stolen.headers["location"].startswith("/ui")


def test_every_page_route_without_a_session_goes_to_the_sign_in_page(service: Service) -> None:
    from starlette.routing import Route

    examples = {"tenant": "acme", "run_id": "00000000-0000-0000-0000-000000000000", "employee_id": "1"}
    page_routes = [
        (method, route.path)
        for route in service.app.routes
        if isinstance(route, Route) and route.path.startswith("/ui/")
        for method in sorted((route.methods or set()) - {"HEAD"})
    ]
    assert len(page_routes) >= 14
    with httpx.Client(base_url=service.url) as anonymous:
        for method, path in page_routes:
            answer = anonymous.request(method, path.format(**examples), data={"csrf": "x", "key": ""})
            if path == "/ui/sign-in":
                assert answer.status_code == 403, answer.text  # no sign-in cookie: a stale form
            else:
                assert answer.status_code == 303 and answer.headers["location"] == "/ui", (method, path)
    with service.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(Integration)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(ConnectState)).scalar() == 0
