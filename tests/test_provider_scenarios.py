"""One scenario, run once per provider profile through the whole flow on SQLite and Postgres (issue 11).

Each provider starts from its own hand-written tenant (simulator.datasets.provider_dataset), served over HTTP
in the shape it arrives in through Unified.to: entra and google list their groups with `user_ids`, nested by
`parent_id`; personio names departments only in each employee's `groups[]`, and its `/hris/group` answers 501.
`Source` applies one logical change (a hire, a move out of a group, ...) in whichever shape the provider
uses, so the same scenario table proves every shape: after each step, the run's counts and the whole
employee table (status, why flagged, planned leave date) are what design.md promises.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import polars as pl
import pytest
from sqlalchemy import Engine, select

from admin.operations import fresh_groups
from simulator.datasets import DOMAIN, provider_dataset
from store.models import Employee
from store.repo import add_employee, add_tenant, connect, list_employees, select_groups
from tasks.match import DISABLED, ENDED, GONE, MOVED_OUT, NEVER_MATCHED
from tasks.validate import NO_MEMBERSHIPS, GuardTripped
from tests.tables import last_run
from tests.upstreams import Upstream, sync
from tests.wire import person

pytestmark = pytest.mark.usefixtures("prefect_api")

PROVIDERS = ["entra", "personio", "google"]

# The dataset's end dates are fixed: 2026-01-31 and 2026-06-30 have passed, 2031-03-31 lies ahead. The ones the
# scenario sets are relative to today, so that "passed" and "ahead" stay true whenever the test runs.
TODAY = datetime.now(UTC).date()
PASSED = TODAY - timedelta(days=30)
AHEAD = TODAY + timedelta(days=365)

HIRE = f"emma.wagner@{DOMAIN}"  # the person hired in step 2, in every provider
NEVER = f"praktikum@{DOMAIN}"  # an employee added by hand whom no source has: never matched
NEW_DOMAIN = "firma-gruppe.example"  # where one person's address moves in step 3


# ---- one logical change, in each provider's shape ------------------------------------------------------


def email_of(record: dict[str, Any]) -> str | None:
    """The address the product uses (design.md, "Matching"): the first WORK one, else the first OTHER one."""
    emails = record.get("emails") or []
    for kind in ("WORK", "OTHER"):
        for entry in emails:
            if entry["type"] == kind:
                return str(entry["email"])
    return None


class Source:
    """The provider's tenant as the simulator serves it, changed the way that provider shows a change."""

    def __init__(self, provider: str, **shape: Any) -> None:
        self.provider = provider
        self.data = provider_dataset(provider, **shape)

    @property
    def embedded(self) -> bool:
        """Whether memberships arrive only inside each employee's `groups[]` (personio) or on listed groups."""
        return self.provider == "personio"

    def user(self, email: str) -> dict[str, Any]:
        return next(e for e in self.data["employees"] if email_of(e) == email)

    def by_id(self, user_id: str | None) -> dict[str, Any] | None:
        return next((e for e in self.data["employees"] if e["id"] == user_id), None)

    def hire(self, user_id: str, email: str, first: str, last: str, group_id: str) -> Source:
        record = person(user_id, email, first, last)
        if self.embedded:
            record["groups"] = []
        self.data["employees"].append(record)
        return self.join(email, group_id)

    def join(self, email: str, group_id: str) -> Source:
        user = self.user(email)
        if self.embedded:  # the group as other employees name it: id, name and type
            named = (g for e in self.data["employees"] for g in e.get("groups", []) if g["id"] == group_id)
            user["groups"].append(dict(next(named)))
        else:
            self._group(group_id)["user_ids"].append(user["id"])
        return self

    def move_out(self, email: str, group_id: str) -> Source:
        user = self.user(email)
        if self.embedded:
            user["groups"] = [g for g in user["groups"] if g["id"] != group_id]
        else:
            self._group(group_id)["user_ids"].remove(user["id"])
        return self

    def rename(self, email: str, last_name: str) -> Source:
        user = self.user(email)
        user["last_name"] = last_name
        user["name"] = f"{user['first_name']} {last_name}"
        return self

    def change_email(self, email: str, new: str) -> Source:
        entry = next(entry for entry in self.user(email)["emails"] if entry["email"] == email)
        entry["email"] = new  # of the same type (an Entra principal name stays OTHER)
        return self

    def disable(self, email: str) -> Source:
        self.user(email)["employment_status"] = "INACTIVE"
        return self

    def delete(self, email: str) -> Source:
        user = self.user(email)
        self.data["employees"].remove(user)
        for group in self.data["groups"]:  # a deleted user is nobody's member any more
            if user["id"] in group.get("user_ids", []):
                group["user_ids"].remove(user["id"])
        return self

    def end(self, email: str, on: date) -> Source:
        self.user(email)["terminated_at"] = f"{on.isoformat()}T00:00:00Z"
        return self

    def _group(self, group_id: str) -> dict[str, Any]:
        return next(g for g in self.data["groups"] if g["id"] == group_id)


# ---- the profiles: who is where in each provider's tenant, and what the first sync makes of it ---------------


class Row(NamedTuple):
    """One employee as the admin sees it: status, why flagged, planned (or passed) leave date."""

    status: str
    reason: str | None = None
    leave_date: str | None = None


@dataclass(frozen=True)
class Profile:
    provider: str
    selected: dict[str, int]  # the groups the tenant syncs, with the member count the group list shows for each
    by_hand: list[str]  # employees added before the first sync: source users' emails in other capitals, and NEVER
    first_counts: dict[str, int]
    first_table: dict[str, Row]
    hire_id: str  # in the provider's id style
    hire_into: str  # the group the hire joins
    renamed: str  # who of the linked people gets a new last name in step 3
    new_email: str  # whose address moves to NEW_DOMAIN in step 3
    deleted: str  # step 5
    moved_out: str  # step 6: out of `moved_out_of`, still listed
    moved_out_of: str

    @property
    def new_address(self) -> str:
        return self.new_email.replace(f"@{DOMAIN}", f"@{NEW_DOMAIN}")


ENTRA = Profile(
    provider="entra",
    # Engineering holds Kai directly, and Jürgen and the disabled Thảo through Platform, nested in it; the
    # project group holds Anna and a guest, Marco (his foreign address arrives as OTHER).
    selected={"0b6a4f3e-2d1c-4e8a-9f70-6a5b4c3d2e1f": 3, "3e9d7061-5a4f-4b1d-8c43-9d8e7f605142": 2},
    by_hand=[f"Juergen.Mueller@{DOMAIN.upper()}", f"THAO.NGUYEN@{DOMAIN}", f"Anna.Schmidt@{DOMAIN}", NEVER],
    # Lisa (a guest in Vertrieb), the service account and Lena are in no selected group.
    # Thảo, disabled, is linked by email and flagged in the same run: counted as terminated, not as linked.
    first_counts={"fetched": 8, "filtered_out": 3, "created": 2, "linked": 2, "non_matching": 1, "skipped_inactive": 0}
    | {"terminated": 1, "flagged_never_matched": 1, "flagged_disabled": 1},
    first_table={
        f"anna.schmidt@{DOMAIN}": Row("synced"),
        f"juergen.mueller@{DOMAIN}": Row("synced"),  # a member through the nested group only
        f"thao.nguyen@{DOMAIN}": Row("terminated", DISABLED),  # a disabled account: linked, and terminated
        f"kai.becker@{DOMAIN}": Row("synced"),  # his principal name, an OTHER address: created
        "m.rossi@partner.example": Row("synced"),
        NEVER: Row("non_matching", NEVER_MATCHED),
    },
    hire_id="d47a0b92-8c1f-4de3-9ef6-0fa1b2c3d4e5",
    hire_into="1c7b5e4f-3e2d-4f9b-8a61-7b6c5d4e3f20",  # Platform, nested in the selected Engineering
    renamed=f"juergen.mueller@{DOMAIN}",
    new_email=f"kai.becker@{DOMAIN}",
    deleted="m.rossi@partner.example",  # the guest is removed from the directory
    moved_out=f"anna.schmidt@{DOMAIN}",  # leaves the project; still in Vertrieb, which is not selected
    moved_out_of="3e9d7061-5a4f-4b1d-8c43-9d8e7f605142",
)

PERSONIO = Profile(
    provider="personio",
    # Sales (1001, which Jürgen's record spells "Sales DACH"), Engineering (1002) and Marketing (1003): only ever
    # named inside the employees' groups[].
    selected={"1001": 3, "1002": 2, "1003": 1},
    by_hand=[f"anna.SCHMIDT@{DOMAIN}", f"JUERGEN.MUELLER@{DOMAIN}", f"Baerbel.Gross@{DOMAIN}", NEVER],
    # Søren is in no department yet; Thảo left (INACTIVE, end date passed) and has no employee: not created.
    # Bärbel, past her end date, is linked by email and flagged in the same run: counted as terminated.
    first_counts={"fetched": 7, "filtered_out": 1, "created": 2, "linked": 2, "non_matching": 1, "skipped_inactive": 1}
    | {"terminated": 1, "flagged_never_matched": 1, "flagged_ended": 1},
    first_table={
        f"anna.schmidt@{DOMAIN}": Row("synced"),
        f"juergen.mueller@{DOMAIN}": Row("synced"),  # in 1001 under its other name
        f"baerbel.gross@{DOMAIN}": Row("terminated", ENDED, "2026-06-30"),  # ACTIVE, but her end date has passed
        f"kai.becker@{DOMAIN}": Row("synced", None, "2031-03-31"),  # a planned leave: shown, nothing changes yet
        f"zoe.obrien@{DOMAIN}": Row("synced"),
        NEVER: Row("non_matching", NEVER_MATCHED),
    },
    hire_id="83780",
    hire_into="1001",
    renamed=f"kai.becker@{DOMAIN}",  # keeps his planned leave date through the rename
    new_email=f"anna.schmidt@{DOMAIN}",
    deleted=f"zoe.obrien@{DOMAIN}",
    moved_out=f"juergen.mueller@{DOMAIN}",  # out of Sales; his team and office still name him
    moved_out_of="1001",
)

GOOGLE = Profile(
    provider="google",
    # All Staff has no direct member: everyone is in through Engineering, Platform (nested two deep) or Vertrieb.
    selected={"100000000000000000001": 6},
    by_hand=[f"ANNA.SCHMIDT@{DOMAIN.upper()}", f"Juergen.Mueller@{DOMAIN}", f"Kai.Becker@{DOMAIN}", NEVER],
    # Søren is in no group; Thảo is suspended and has no employee: not created.
    # Kai, archived, is linked by email and flagged in the same run: counted as terminated.
    first_counts={"fetched": 7, "filtered_out": 1, "created": 2, "linked": 2, "non_matching": 1, "skipped_inactive": 1}
    | {"terminated": 1, "flagged_never_matched": 1, "flagged_disabled": 1},
    first_table={
        f"anna.schmidt@{DOMAIN}": Row("synced"),
        f"juergen.mueller@{DOMAIN}": Row("synced"),  # a member of Platform only, two groups below All Staff
        f"kai.becker@{DOMAIN}": Row("terminated", DISABLED),  # archived: linked, and terminated
        f"zoe.obrien@{DOMAIN}": Row("synced"),  # in two groups, one employee
        f"baerbel.gross@{DOMAIN}": Row("synced"),  # her alias is no employee of its own
        NEVER: Row("non_matching", NEVER_MATCHED),
    },
    hire_id="114563218920347651241",
    hire_into="100000000000000000003",  # Platform
    renamed=f"juergen.mueller@{DOMAIN}",
    new_email=f"baerbel.gross@{DOMAIN}",  # her primary address moves; the alias stays an OTHER address
    deleted=f"zoe.obrien@{DOMAIN}",
    moved_out=f"anna.schmidt@{DOMAIN}",  # out of Vertrieb, her only group: listed, in no group
    moved_out_of="100000000000000000004",
)

PROFILES = {p.provider: p for p in (ENTRA, PERSONIO, GOOGLE)}


# ---- the scenario table -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    what: str
    change: Callable[[Source, Profile], Source | None]
    counts: dict[str, int]  # besides these, every count of CHANGES is 0
    table: Callable[[Profile], dict[str, Row | None]]  # the rows this step changes (None: that email is gone)
    only: str | None = None  # a step for one provider only
    writes_nothing: bool = False  # the employee rows must stay exactly as they were


# The counts of what a run changes or flags; a step names the ones that are not 0.
CHANGES = [
    "created",
    "linked",
    "updated",
    "terminated",
    "non_matching",
    "reactivated",
    "deactivated",
    "deleted",
    "conflicts",
    "invalid",
    "flagged_gone",
    "flagged_moved_out",
    "flagged_never_matched",
    "flagged_disabled",
    "flagged_ended",
]

STEPS = [
    Step(
        "a hire, in a group inside the selection (entra, google: a nested one)",
        lambda s, p: s.hire(p.hire_id, HIRE, "Emma", "Wagner", p.hire_into),
        {"created": 1},
        lambda p: {HIRE: Row("synced")},
    ),
    Step(
        "a name change and an email change of linked people",
        lambda s, p: s.rename(p.renamed, "Lang").change_email(p.new_email, p.new_address),
        {"updated": 2},
        lambda p: {p.new_email: None, p.new_address: Row("synced")},
    ),
    Step(
        "a disabled account: the hire's",
        lambda s, p: s.disable(HIRE),
        {"terminated": 1, "flagged_disabled": 1},
        lambda p: {HIRE: Row("terminated", DISABLED)},
    ),
    Step(
        "a leaver deleted from the source",
        lambda s, p: s.delete(p.deleted),
        {"non_matching": 1, "flagged_gone": 1},
        lambda p: {p.deleted: Row("non_matching", GONE)},
    ),
    Step(
        "a move out of the selected groups, still listed",
        lambda s, p: s.move_out(p.moved_out, p.moved_out_of),
        {"non_matching": 1, "flagged_moved_out": 1},
        lambda p: {p.moved_out: Row("non_matching", MOVED_OUT)},
    ),
    Step(
        "an end date reached on an ACTIVE person (Kai's moved forward), and one ahead (Anna's)",
        lambda s, p: s.end(f"kai.becker@{DOMAIN}", PASSED).end(f"anna.schmidt@{NEW_DOMAIN}", AHEAD),
        {"terminated": 1, "flagged_ended": 1, "updated": 1},
        lambda p: {
            f"kai.becker@{DOMAIN}": Row("terminated", ENDED, PASSED.isoformat()),
            f"anna.schmidt@{NEW_DOMAIN}": Row("synced", None, AHEAD.isoformat()),
        },
        only="personio",
    ),
    Step(
        "no change: the run writes nothing",
        lambda s, p: None,
        {"joined": 0, "left": 0},
        lambda p: {},
        writes_nothing=True,
    ),
]


# ---- the tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_shape_follows_hires_changes_and_leavers_through_the_flow(
    provider: str, engine: Engine, upstream: Upstream
) -> None:
    profile = PROFILES[provider]
    source = Source(provider)
    groups = first_sync(engine, upstream, profile, source)
    shown = dict(groups.select("group_id", "member_count").iter_rows())
    assert {g: shown[g] for g in profile.selected} == profile.selected  # nested members counted in

    expected = dict(profile.first_table)
    for step in STEPS:
        if step.only not in (None, provider):
            continue
        step.change(source, profile)
        upstream.source.replace(copy.deepcopy(source.data))
        before = employee_rows(engine)
        result = sync()
        expected = {e: row for e, row in (expected | step.table(profile)).items() if row is not None}
        assert_run(engine, source, result, step.counts, expected, step.what)
        if step.writes_nothing:
            assert employee_rows(engine) == before, step.what


def test_personio_groups_read_alike_whether_its_group_endpoint_answers_501_or_an_empty_list(
    engine: Engine, upstream: Upstream
) -> None:
    seen = {}
    for tenant, endpoint in (("acme", "unsupported"), ("beta", "empty")):
        source = Source("personio", group_endpoint=endpoint)
        groups = first_sync(engine, upstream, PERSONIO, source, tenant=tenant)
        seen[endpoint] = (groups.sort("group_id").to_dicts(), table(engine, tenant))
    assert seen["empty"] == seen["unsupported"]
    names = {g["group_id"]: (g["name"], g["type"]) for g in seen["empty"][0]}
    assert names["1001"] == ("Sales", "DEPARTMENT")  # one group, the first name it came under
    assert names["3002"] == ("München", "BRANCH")


@pytest.mark.parametrize("endpoint", ["unsupported", "empty", "listed"])
def test_a_personio_source_naming_no_groups_stops_a_run_with_groups_selected_and_syncs_all_users(
    endpoint: str, engine: Engine, upstream: Upstream
) -> None:
    source = Source("personio", group_endpoint=endpoint)  # listed: the groups, none with members
    upstream.source.replace(copy.deepcopy(source.data))
    connect_and_select(engine, upstream, "personio", ["1001"])
    for employee in source.data["employees"]:  # Unified fills no groups[] (any more): no membership anywhere
        del employee["groups"]
    upstream.source.replace(source.data)

    with pytest.raises(GuardTripped) as stopped:
        sync()
    assert NO_MEMBERSHIPS in str(stopped.value)
    assert last_run(engine).outcome == "stopped_by_guard"
    assert list_employees(engine, "acme") == []

    select_groups(engine, "acme", [], all_users=True)
    result = sync()
    assert result["outcome"] == "succeeded"
    # Thảo and Bärbel have left (INACTIVE; an end date passed) and have no employee: not created
    assert (result["counts"]["created"], result["counts"]["skipped_inactive"]) == (5, 2)


# ---- helpers ----------------------------------------------------------------------------------------------


def connect_and_select(
    engine: Engine, upstream: Upstream, provider: str, group_ids: list[str], *, tenant: str = "acme"
) -> pl.DataFrame:
    """Add the tenant, connect it to the simulator, read its group list fresh from the source (as `provision
    groups` does) and select `group_ids` from it. Returns the group list."""
    connection_id = "conn-1" if tenant == "acme" else upstream.add_connection(f"conn-{tenant}")
    add_tenant(engine, tenant)
    connect(engine, tenant, provider=provider, connection_id=connection_id, base_url=upstream.url)
    groups = fresh_groups(engine, tenant)
    select_groups(engine, tenant, group_ids, all_users=False)
    return groups


def first_sync(
    engine: Engine, upstream: Upstream, profile: Profile, source: Source, *, tenant: str = "acme"
) -> pl.DataFrame:
    """The profile's tenant connected, its employees added by hand, and its first sync checked. Returns the
    group list read while connecting."""
    upstream.source.replace(copy.deepcopy(source.data))
    groups = connect_and_select(engine, upstream, profile.provider, list(profile.selected), tenant=tenant)
    for email in profile.by_hand:
        add_employee(engine, tenant, email=email, first_name="Vorname", last_name="Nachname")
    result = sync(tenant)
    what = f"the first sync of {tenant}"
    assert_run(engine, source, result, profile.first_counts, profile.first_table, what, tenant=tenant)
    return groups


def assert_run(
    engine: Engine,
    source: Source,
    result: dict[str, Any],
    counts: dict[str, int],
    expected: dict[str, Row],
    what: str,
    *,
    tenant: str = "acme",
) -> None:
    """The run succeeded with these counts (every other count of CHANGES 0), the employee table is `expected`,
    and every linked employee carries its source user's email and names."""
    assert result["outcome"] == "succeeded", what
    wanted = dict.fromkeys(CHANGES, 0) | counts
    assert {k: result["counts"][k] for k in wanted} == wanted, what
    assert table(engine, tenant) == expected, what
    assert_links_follow_the_source(engine, source, tenant, what)


def table(engine: Engine, tenant: str = "acme") -> dict[str, Row]:
    return {e["email"]: Row(e["status"], e["reason"], e["leave_date"]) for e in list_employees(engine, tenant)}


def assert_links_follow_the_source(engine: Engine, source: Source, tenant: str, what: str) -> None:
    """Synced and terminated employees are linked to their source user and carry its email and names (the source
    is the truth); a flagged one keeps its link (gone: no longer listed; moved out: still listed), or has none
    (never matched). Under the default policy nobody is made inactive for the platform."""
    for employee in list_employees(engine, tenant):
        record = source.by_id(employee["link"])
        if employee["status"] in ("synced", "terminated"):
            assert record is not None, (what, employee)
            theirs = (email_of(record), record["first_name"], record["last_name"])
            assert (employee["email"], employee["first_name"], employee["last_name"]) == theirs, what
        else:
            linked = {NEVER_MATCHED: False, GONE: True, MOVED_OUT: True}[employee["reason"]]
            listed = {NEVER_MATCHED: False, GONE: False, MOVED_OUT: True}[employee["reason"]]
            assert (employee["link"] is not None, record is not None) == (linked, listed), (what, employee)
        assert not employee["deactivated"], (what, employee)


def employee_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Every column of every employee row, to show that a run wrote nothing."""
    with engine.connect() as conn:
        return sorted((tuple(row) for row in conn.execute(select(Employee.__table__))), key=repr)
