"""Explaining one person (`provision explain`, `GET /tenants/{t}/explain`): their source record, their groups and
the scope verdict, the employee they match and by which rule, and what the next run would do and why, read off
the sync's own stages on the current source; nothing is written.

The tenant is synced once from the simulator over real HTTP (the pipeline's plain stages, no flow), employees are
added by hand, and then the source changes; each test explains one person of that second source.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, func, select

from admin.explain import ExplainQueryError, UnknownPerson, explain_person
from pipeline import sync_run
from store.models import Run
from store.repo import (
    add_employee,
    connect,
    integration_settings,
    replace_groups,
    select_groups,
    set_policy,
    start_run,
)
from tasks.match import DISABLED, MOVED_OUT, NEVER_MATCHED
from tests.processes import clean_env, run_provision
from tests.services import Service, admin_service
from tests.tables import db_state, table
from tests.upstreams import CONNECTION, TOKEN, Upstream, setup_tenant
from tests.wire import dataset, group, person

BEFORE = [
    person("u-anna", "anna@acme.example", "Anna", "Alt"),
    person("u-dora", "dora@acme.example", "Dora", "Dahin"),
    person("u-mo", "mo@acme.example", "Mo", "Weg"),
    person("u-nina", "nina@acme.example", "Nina", "Nested"),
    person("u-quinn", "quinn@acme.example", "Quinn", "Quer"),
]
STAFF_GROUPS = [
    group("g-staff", "Staff", ["u-anna", "u-dora", "u-mo", "u-quinn"]),
    group("g-team", "Team", ["u-nina"], parent="g-staff"),  # why: a member of the child only is in scope through it
    group("g-other", "Contractors", []),
]
AFTER = dataset(
    [
        person("u-anna", "anna@acme.example", "Anna", "Neu"),  # why: a linked employee whose name changes (rule 1)
        person("u-dora", "dora@acme.example", "Dora", "Dahin", active=False),  # why: disabled -> terminated
        person("u-mo", "mo@acme.example", "Mo", "Weg"),  # why: moved to a group nobody selected
        person("u-nina", "nina@acme.example", "Nina", "Nested"),
        person("u-quinn", "not an address", "Quinn", "Quer"),  # why: quarantined; its employee is kept as it is
        person("u-hugo", "hugo@acme.example", "Hugo", "Neu"),  # why: a new hire (rule 3)
        person("u-pia", "pia@acme.example", "Pia", "Pünktlich"),  # why: an employee made by hand has it (rule 2)
        # why: quinn's employee keeps this address (its own record is quarantined): a conflict, not a merge (rule 6)
        person("u-quentin", "quinn@acme.example", "Quentin", "Quer"),
    ],
    [
        group("g-staff", "Staff", ["u-anna", "u-dora", "u-quinn", "u-hugo", "u-pia", "u-quentin"]),
        group("g-team", "Team", ["u-nina"], parent="g-staff"),
        group("g-other", "Contractors", ["u-mo"]),
    ],
)


def sync_plainly(engine: Engine, tenant: str = "acme") -> None:
    """One sync of the tenant through the pipeline's plain stages (no Prefect flow), loaded."""
    run_id = start_run(engine, tenant, trigger="cli", parameters={}, flow_run_id=None, dry_run=False)
    sync_run(engine, integration_settings(engine, tenant), run_id, dry_run=False)


def prepare(engine: Engine, upstream: Upstream) -> None:
    """Acme synced from BEFORE (g-staff selected), two employees added by hand, and the source now AFTER."""
    upstream.source.replace(dataset(BEFORE, STAFF_GROUPS))
    setup_tenant(engine, upstream, ["g-staff"])
    sync_plainly(engine)
    add_employee(engine, "acme", email="Pia@ACME.example", first_name="Pia", last_name="Hand")
    add_employee(engine, "acme", email="left@acme.example", first_name="Lea", last_name="Left")
    upstream.source.replace(AFTER)


@pytest.fixture
def acme(engine: Engine, upstream: Upstream) -> Engine:
    prepare(engine, upstream)
    return engine


def explain(engine: Engine, **person: str) -> dict[str, Any]:
    return explain_person(engine, "acme", **person)


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


# ---- the rules, one person each -----------------------------------------------------------------------


def test_a_new_hire_matches_no_employee_and_would_be_created_by_rule_3(acme: Engine) -> None:
    doc = explain(acme, email="hugo@acme.example")
    hugo = only(doc["source_users"])
    assert hugo["record"] == {
        "user_id": "u-hugo",
        "email": "hugo@acme.example",
        "first_name": "Hugo",
        "last_name": "Neu",
        "display_name": "Hugo Neu",
        "employment_status": "active",
    }  # the allowed attributes only: no birthday, no title
    assert hugo["scope"]["verdict"] == "in_selected_group" and hugo["scope"]["selected_groups"] == ["g-staff"]
    assert hugo["match"]["rule"] == 3 and hugo["match"]["employee_id"] is None
    assert hugo["next_run"]["action"] == "created" and hugo["next_run"]["new_status"] == "synced"
    assert hugo["next_run"]["changes"]["email"] == {"old": None, "new": "hugo@acme.example"}
    assert doc["employees"] == []


def test_an_unlinked_employee_with_the_same_email_is_matched_by_rule_2_and_gets_the_link(acme: Engine) -> None:
    doc = explain(acme, email="  PIA@acme.example ")  # compared as matching compares: trimmed, case-folded
    pia = only(doc["source_users"])
    employee = only(doc["employees"])
    assert (employee["email"], employee["status"], employee["link"]) == ("Pia@ACME.example", "unmanaged", None)
    assert pia["match"] == {
        "rule": 2,
        "employee_id": employee["employee_id"],
        "how": "an unlinked employee with the same email (rule 2): the next run links it",
    }
    assert employee["relation"] == "has this email, not linked"
    outcome = employee["next_run"]
    assert outcome["action"] == "linked" and outcome["new_status"] == "synced"
    assert outcome["changes"]["last_name"] == {"old": "Hand", "new": "Pünktlich"}
    assert pia["next_run"] is None  # its outcome is the employee's


def test_a_linked_employee_is_matched_by_id_and_takes_the_new_name_by_rule_1(acme: Engine) -> None:
    doc = explain(acme, source_id="u-anna")
    anna = only(doc["source_users"])
    employee = only(doc["employees"])
    assert anna["match"]["rule"] == 1 and anna["match"]["employee_id"] == employee["employee_id"]
    assert employee["relation"] == "linked to source user u-anna" and employee["status"] == "synced"
    outcome = employee["next_run"]
    assert outcome["action"] == "updated" and outcome["reason"] is None
    assert outcome["changed_fields"] == ["last_name", "display_name"]
    assert outcome["changes"] == {
        "last_name": {"old": "Alt", "new": "Neu"},
        "display_name": {"old": "Anna Alt", "new": "Anna Neu"},
    }


def test_a_disabled_source_user_makes_its_employee_terminated(acme: Engine) -> None:
    doc = explain(acme, email="dora@acme.example")
    dora = only(doc["source_users"])
    assert dora["record"]["employment_status"] == "inactive" and dora["match"]["rule"] == 1
    outcome = only(doc["employees"])["next_run"]
    assert (outcome["action"], outcome["new_status"], outcome["reason"]) == ("terminated", "terminated", DISABLED)


def test_a_source_user_moved_out_of_the_selected_groups_flags_its_employee_and_its_groups_say_why(
    acme: Engine,
) -> None:
    doc = explain(acme, email="mo@acme.example")
    mo = only(doc["source_users"])
    assert mo["groups"] == [
        {"group_id": "g-other", "name": "Contractors", "selected": False, "inherited": False, "via": []}
    ]
    assert mo["scope"] == {
        "verdict": "outside",
        "because": "none of its groups (Contractors (g-other)) is selected",
        "selected_groups": [],
    }
    assert mo["match"]["rule"] == 1
    assert mo["match"]["how"].endswith("but the next run does not match it: outside the selected groups")
    outcome = only(doc["employees"])["next_run"]
    assert (outcome["action"], outcome["new_status"], outcome["reason"]) == ("non_matching", "non_matching", MOVED_OUT)
    assert doc["selection"] == {
        "all_users": False,
        "groups": [{"group_id": "g-staff", "name": "Staff"}],
        "missing_groups": [],
    }


def test_the_next_run_is_shown_with_the_tenants_deprovisioning_policy(acme: Engine) -> None:
    set_policy(acme, "acme", mode="deactivate", grace_days=None)
    outcome = only(explain(acme, email="mo@acme.example")["employees"])["next_run"]
    assert (outcome["action"], outcome["reason"]) == ("non_matching", MOVED_OUT)
    assert outcome["changes"]["deactivated"] == {"old": False, "new": True}


def test_a_member_of_a_child_group_is_in_scope_through_the_selected_parent_it_inherits(acme: Engine) -> None:
    doc = explain(acme, source_id="u-nina")
    nina = only(doc["source_users"])
    assert nina["groups"] == [
        {"group_id": "g-team", "name": "Team", "selected": False, "inherited": False, "via": []},
        {"group_id": "g-staff", "name": "Staff", "selected": True, "inherited": True, "via": ["g-team"]},
    ]
    assert nina["scope"]["verdict"] == "in_selected_group" and nina["scope"]["selected_groups"] == ["g-staff"]
    assert nina["match"]["rule"] == 1
    assert only(doc["employees"])["next_run"]["action"] == "unchanged"


def test_a_quarantined_record_is_not_matched_and_its_employee_is_kept_as_it_is(acme: Engine) -> None:
    doc = explain(acme, source_id="u-quinn")
    quinn = only(doc["source_users"])
    assert quinn["record"]["email"] is None  # the edge keeps no address that is not one
    assert quinn["quarantined"] == "email is not a valid address; no usable email"  # as the run reports it
    assert quinn["scope"]["verdict"] == "in_selected_group"
    assert quinn["match"]["how"].endswith(f"does not match it: quarantined ({quinn['quarantined']})")
    employee = only(doc["employees"])
    assert employee["email"] == "quinn@acme.example" and employee["status"] == "synced"
    outcome = employee["next_run"]
    assert (outcome["action"], outcome["new_status"]) == ("kept", "synced") and outcome["changed_fields"] == []
    assert outcome["reason"] == "its source user is quarantined or in conflict"


def test_a_new_source_user_with_the_email_of_an_employee_linked_to_another_is_a_conflict(acme: Engine) -> None:
    doc = explain(acme, email="quinn@acme.example")
    quentin = only(doc["source_users"])  # quinn's own record has no usable email any more
    assert quentin["record"]["user_id"] == "u-quentin"
    assert quentin["match"] == {
        "rule": 6,
        "employee_id": None,
        "how": "a conflict (rule 6): nothing is applied for it",
    }
    assert (quentin["next_run"]["action"], quentin["next_run"]["reason"]) == (
        "conflict",
        "email already belongs to another employee",
    )
    employee = only(doc["employees"])
    assert employee["relation"] == "has this email, linked to another source user (u-quinn)"
    assert employee["next_run"]["action"] == "kept"


def test_an_employee_no_source_user_has_is_explained_by_what_the_run_does_to_it(acme: Engine) -> None:
    doc = explain(acme, email="left@acme.example")
    assert doc["source_users"] == []
    employee = only(doc["employees"])
    assert employee["relation"] == "has this email, not linked"
    assert (employee["next_run"]["action"], employee["next_run"]["reason"]) == ("non_matching", NEVER_MATCHED)


def test_an_unknown_person_is_one_sentence(acme: Engine) -> None:
    with pytest.raises(UnknownPerson, match=r"^Neither the source of tenant 'acme' nor its employees know that email"):
        explain(acme, email="nobody@acme.example")
    with pytest.raises(UnknownPerson, match="know source id 'u-ghost'"):
        explain(acme, source_id="u-ghost")
    with pytest.raises(ExplainQueryError):
        explain(acme, email="anna@acme.example", source_id="u-anna")


def test_explaining_writes_nothing_and_only_reads_the_source(
    acme: Engine, database_url: str, upstream: Upstream
) -> None:
    before = db_state(database_url)
    employees = table(acme)
    for person_ in ({"email": "hugo@acme.example"}, {"email": "mo@acme.example"}, {"source_id": "u-quinn"}):
        explain(acme, **person_)
    assert db_state(database_url) == before  # every table, row for row: no run row, the same group list
    assert table(acme) == employees
    with acme.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar_one() == 1  # the first sync's only
    assert upstream.requested_kinds() == {"employee", "group"}


# ---- the doors ------------------------------------------------------------------------------------------


@pytest.mark.slow  # real processes, each importing the product and Prefect
def test_the_cli_prints_a_readable_block_or_the_document_and_refuses_an_unknown_person(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, upstream: Upstream, tmp_path: Path
) -> None:
    from store.db import make_engine

    monkeypatch.setenv("PROVISIONING_DATABASE_URL", sqlite_url)
    prepare(make_engine(sqlite_url), upstream)
    env = {**clean_env(tmp_path), "PROVISIONING_DATABASE_URL": sqlite_url, "UNIFIED_API_TOKEN": TOKEN}

    shown = run_provision("explain", "acme", "--email", "mo@acme.example", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Source user u-mo" in shown.stdout
    assert "groups        Contractors (g-other): not selected" in shown.stdout
    assert "outside the selected groups" in shown.stdout
    assert f"next run      non_matching (status non_matching): {MOVED_OUT}" in shown.stdout

    as_json = run_provision("explain", "acme", "--source-id", "u-anna", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["source_users"][0]["match"]["rule"] == 1
    assert doc["employees"][0]["next_run"]["changes"]["last_name"] == {"old": "Alt", "new": "Neu"}

    unknown = run_provision("explain", "acme", "--email", "nobody@acme.example", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "Error: Neither the source of tenant 'acme' nor its employees know that email."


@pytest.fixture
def service(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The admin API over acme, connected to the simulator serving BEFORE with g-staff selected."""
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    with admin_service(engine, dataset(BEFORE, STAFF_GROUPS)) as served:
        connect(engine, "acme", provider="entra", connection_id=CONNECTION, base_url=served.upstream.url)
        listed = {"group_id": ["g-staff"], "name": ["Staff"], "parent_id": [None], "member_count": [4]}
        replace_groups(engine, "acme", pl.DataFrame(listed))
        select_groups(engine, "acme", ["g-staff"], all_users=False)
        yield served


def test_the_api_explains_a_person_of_the_callers_tenant_only(service: Service) -> None:
    with service.client("acme") as api:
        answer = api.get("/tenants/acme/explain", params={"email": "anna@acme.example"})
        assert answer.status_code == 200, answer.text
        anna = only(answer.json()["source_users"])
        assert anna["match"]["rule"] == 3 and anna["next_run"]["action"] == "created"  # no employee yet

        unknown = api.get("/tenants/acme/explain", params={"source_id": "u-ghost"})
        assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
        assert (
            unknown.json()["detail"]
            == "Neither the source of tenant 'acme' nor its employees know source id 'u-ghost'."
        )

        both = api.get("/tenants/acme/explain", params={"email": "anna@acme.example", "source_id": "u-anna"})
        assert both.status_code == 422 and both.headers["content-type"] == "application/problem+json"
        assert api.get("/tenants/acme/explain").status_code == 422

        responses = api.get("/openapi.json").json()["paths"]["/tenants/{tenant}/explain"]["get"]["responses"]
        assert {"200", "401", "404", "409", "422", "502"} <= set(responses)
    with service.client("globex") as api:  # another tenant's key: the same 404 as for no tenant at all
        assert api.get("/tenants/acme/explain", params={"email": "anna@acme.example"}).status_code == 404
    with service.client(None) as api:
        assert api.get("/tenants/acme/explain", params={"email": "anna@acme.example"}).status_code == 401
