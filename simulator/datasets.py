"""Small named tenants seeded with the edge cases the pipeline must survive, in Unified.to's wire format.

Each record says why it is there. Tests and scenarios build on these rather than on the random
generator when they need to point at one specific case.

`edge_case_dataset()` is provider-neutral. `provider_dataset(provider)` is one small tenant per provider,
in the shape that provider arrives in through Unified.to (design.md, "Providers as they arrive through
Unified.to"); `generate_dataset(users, seed, provider)` generates the same shapes at any size. What each
shape is, and which parts of it no source confirms (upstream-apis.md; UNCONFIRMED below):

- **entra** (Microsoft Entra ID through Graph): ids are GUIDs. `/hris/group` lists the groups with their
  members in `user_ids`, nested by `parent_id`; group `type` is GROUP or absent. Employees carry no
  `groups[]`. A user without `mail` arrives without a WORK email: their user principal name as an OTHER
  email, or no email at all (service accounts). Guests arrive with an OTHER email at a foreign domain,
  as Graph's `x_gmail.com#EXT#@tenant.onmicrosoft.com` principal name or as their plain address. Disabled
  accounts arrive INACTIVE, with no `terminated_at`, and stay in their groups. UNCONFIRMED: which
  membership form Unified fills for Entra (1.8), that it passes Graph's GUIDs through, that the principal
  name arrives as OTHER, how guests and the group type arrive.
- **personio**: Personio has no group or membership list (upstream-apis.md 3), so the dataset says
  `"provider": "personio"` and `/hris/group` answers 501 by default. Departments, teams and offices arrive
  only inside each employee's `groups[]` as `{"id", "name", "type"}` with type DEPARTMENT, TEAM or BRANCH,
  without nesting; the dataset's `groups` holds what `listed_groups` derives from them (no `user_ids`),
  served only with `group_endpoint="listed"`. Ids are numeric strings (employees `"83752"`, departments
  `"1001"`, teams `"2001"`, offices `"3001"`). The same id can arrive under two names (an employee record
  read before and after a rename). Statuses are ACTIVE or INACTIVE only (Personio's `leave` and
  `onboarding` collapse to ACTIVE); leavers are INACTIVE with `terminated_at`, and an ACTIVE employee may
  carry a future one (a planned leave) or, not yet updated, a past one. Emails are WORK. UNCONFIRMED: how
  Unified builds groups for Personio at all (501, `[]` or a derived list; hence `group_endpoint`), the
  group ids and types, the status mapping (upstream-apis.md 5.2).
- **google** (Google Workspace Directory): ids are 21-digit numeric strings, for groups too. `/hris/group`
  lists the groups (type GROUP) with `user_ids`; a group that is a member of another group has it as
  `parent_id`. Every user has their primary address as a WORK email; aliases are addresses of the same
  user, never users of their own. Suspended and archived users arrive INACTIVE, without `terminated_at`.
  Employees carry no `groups[]` (`embedded_groups=True` adds them, the other plausible shape).
  UNCONFIRMED: which membership form Unified fills for Google, the group id format (the Directory's own
  group ids are not numeric), how a group nested in two groups arrives (one `parent_id` only), whether
  aliases are listed as further emails.

The values of `group_endpoint` (`listed`, `unsupported`, `empty`) and each provider's default are in
simulator.source.
"""

from __future__ import annotations

from typing import Any

from simulator.generator import listed_groups
from simulator.source import group_endpoint_of, provider_of

DOMAIN = "firma.example"


def edge_case_dataset() -> dict[str, list[Any]]:
    employees: list[Any] = [
        # why: the plain case everything else is compared against
        {
            "id": "emp-plain",
            "name": "Anna Schmidt",
            "first_name": "Anna",
            "last_name": "Schmidt",
            "emails": [{"email": f"anna.schmidt@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "title": "Buchhalterin",
        },
        # why: a private address listed first must never be chosen over the work address
        {
            "id": "emp-home-first",
            "name": "Jürgen Müller",
            "first_name": "Jürgen",
            "last_name": "Müller",
            "emails": [
                {"email": "juergen_m@privatmail.example", "type": "HOME"},
                {"email": f"juergen.mueller@{DOMAIN}", "type": "WORK"},
            ],
            "employment_status": "ACTIVE",
            "date_of_birth": "1971-03-04",
        },
        # why: only an OTHER address: it is the usable one
        {
            "id": "emp-other-only",
            "name": "Zoë O'Brien",
            "first_name": "Zoë",
            "last_name": "O'Brien",
            "emails": [{"email": f"zoe.obrien@{DOMAIN}", "type": "OTHER"}],
            "employment_status": "ACTIVE",
        },
        # why: only a private address: quarantined, never mailed
        {
            "id": "emp-home-only",
            "name": "Søren Kjærsgaard",
            "first_name": "Søren",
            "last_name": "Kjærsgaard",
            "emails": [{"email": "soeren@privatmail.example", "type": "HOME"}],
            "employment_status": "ACTIVE",
        },
        # why: no email at all
        {
            "id": "emp-no-email",
            "name": "José García",
            "first_name": "José",
            "last_name": "García",
            "employment_status": "ACTIVE",
        },
        # why: a disabled user is terminated, not created
        {
            "id": "emp-inactive",
            "name": "Nguyễn Thảo",
            "first_name": "Thảo",
            "last_name": "Nguyễn",
            "emails": [{"email": f"thao.nguyen@{DOMAIN}", "type": "WORK"}],
            "employment_status": "INACTIVE",
            "terminated_at": "2024-01-31T00:00:00Z",
        },
        # why: the same id twice (a paging glitch or a broken integration) must be caught downstream
        {
            "id": "emp-plain",
            "name": "Anna Schmidt",
            "first_name": "Anna",
            "last_name": "Schmidt",
            "emails": [{"email": f"anna.schmidt@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
        },
        # why: two people, one address: a conflict to report, never a merge
        {
            "id": "emp-shared-email",
            "name": "Anna Schmidt",
            "first_name": "Anna",
            "last_name": "Schmidt",
            "emails": [{"email": f"Anna.Schmidt@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
        },
        # why: a syntactically broken address is quarantined, not sent on
        {
            "id": "emp-bad-email",
            "name": "Bärbel Groß",
            "first_name": "Bärbel",
            "last_name": "Groß",
            "emails": [{"email": "baerbel.gross@@firma", "type": "WORK"}],
            "employment_status": "ACTIVE",
        },
        # why: Postgres cannot store NUL; such a name must be reported, not crash the load
        {
            "id": "emp-nul-name",
            "first_name": "Max\x00",
            "last_name": "Mustermann",
            "emails": [{"email": f"max.mustermann@{DOMAIN}", "type": "WORK"}],
        },
        # why: no id: the record can still be named by its position in the listing
        {
            "name": "Ohne Id",
            "emails": [{"email": f"ohne.id@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
        },
    ]
    groups: list[Any] = [
        {"id": "grp-all", "name": "All Staff", "type": "GROUP", "user_ids": []},
        {
            "id": "grp-eng",
            "name": "Engineering",
            "type": "DEPARTMENT",
            "parent_id": "grp-all",
            "user_ids": ["emp-plain", "emp-home-first"],
        },
        {
            "id": "grp-platform",
            "name": "Platform",
            "type": "TEAM",
            "parent_id": "grp-eng",
            "user_ids": ["emp-other-only", "emp-inactive", "emp-nul-name"],
        },
        # why: a nested-group cycle (A -> B -> A) must be tolerated by flattening, not loop forever
        {"id": "grp-cycle-a", "name": "Zyklus A", "parent_id": "grp-cycle-b", "user_ids": ["emp-shared-email"]},
        {"id": "grp-cycle-b", "name": "Zyklus B", "parent_id": "grp-cycle-a", "user_ids": ["emp-bad-email"]},
        # why: a group with no members still shows up in the group list
        {"id": "grp-empty", "name": "Betriebsrat", "type": "GROUP", "parent_id": "grp-all", "user_ids": []},
    ]
    return {"employees": employees, "groups": groups}


def provider_dataset(
    provider: str, *, group_endpoint: str | None = None, embedded_groups: bool = False
) -> dict[str, Any]:
    """A small tenant (7-8 people) in `provider`'s shape (the module's docstring), every record with its why.

    The dataset carries `"provider"`; `group_endpoint` ("listed", "unsupported", "empty") is written into it
    when given. `embedded_groups` (google only) also gives each employee their direct groups in `groups[]`.
    A fresh copy on every call; an unknown provider or group endpoint is a ValueError.
    """
    provider = provider_of(provider)
    if embedded_groups and provider != "google":
        raise ValueError(f"embedded_groups applies to the google dataset only, not to {provider}'s.")
    dataset = {"entra": _entra, "personio": _personio, "google": _google}[provider]()
    if embedded_groups:
        for employee in dataset["employees"]:  # their direct groups, as the group listing has them
            employee["groups"] = [
                {"id": g["id"], "name": g["name"], "type": g["type"]}
                for g in dataset["groups"]
                if employee["id"] in g["user_ids"]
            ]
    if group_endpoint is not None:
        dataset["group_endpoint"] = group_endpoint_of(group_endpoint)
    return dataset


# ---- entra ---------------------------------------------------------------------------------------------

ENTRA_TENANT = "firmaexample.onmicrosoft.com"  # the tenant's initial domain, where guests' principal names live


def _entra() -> dict[str, Any]:
    engineering = "0b6a4f3e-2d1c-4e8a-9f70-6a5b4c3d2e1f"
    platform = "1c7b5e4f-3e2d-4f9b-8a61-7b6c5d4e3f20"
    sales = "2d8c6f50-4f3e-4a0c-9b52-8c7d6e5f4031"
    project = "3e9d7061-5a4f-4b1d-8c43-9d8e7f605142"
    employees: list[dict[str, Any]] = [
        # why: the plain case, a direct member of a top-level group
        {
            "id": "5b8e2c1a-0f3d-4a6b-9c7e-1d2f3a4b5c6d",
            "name": "Anna Schmidt",
            "first_name": "Anna",
            "last_name": "Schmidt",
            "emails": [{"email": f"anna.schmidt@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "title": "Account Manager",
        },
        # why: a member of Platform only, which is nested in Engineering: selecting Engineering takes them in
        {
            "id": "6c9f3d2b-1a4e-4b7c-8d8f-2e3a4b5c6d7e",
            "name": "Jürgen Müller",
            "first_name": "Jürgen",
            "last_name": "Müller",
            "emails": [{"email": f"juergen.mueller@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "title": "Senior Engineer",
        },
        # why: a disabled account: INACTIVE, no end date, and still in its group (Entra keeps memberships)
        {
            "id": "7d0a4e3c-2b5f-4c8d-9e90-3f4b5c6d7e8f",
            "name": "Thảo Nguyễn",
            "first_name": "Thảo",
            "last_name": "Nguyễn",
            "emails": [{"email": f"thao.nguyen@{DOMAIN}", "type": "WORK"}],
            "employment_status": "INACTIVE",
        },
        # why: no `mail` in Entra: the user principal name arrives as an OTHER email, the only usable one
        {
            "id": "8e1b5f4d-3c6a-4d9e-8fa1-4a5c6d7e8f90",
            "name": "Kai Becker",
            "first_name": "Kai",
            "last_name": "Becker",
            "emails": [{"email": f"kai.becker@{DOMAIN}", "type": "OTHER"}],
            "employment_status": "ACTIVE",
        },
        # why: a guest, in a group people select: an OTHER email at a foreign domain as Graph spells a guest's
        # principal name; never an address of the tenant
        {
            "id": "9f2c6a5e-4d7b-4eaf-9ab2-5b6d7e8f90a1",
            "name": "Lisa Brandt",
            "first_name": "Lisa",
            "last_name": "Brandt",
            "emails": [{"email": f"lisa.brandt_gmail.com#EXT#@{ENTRA_TENANT}", "type": "OTHER"}],
            "employment_status": "ACTIVE",
        },
        # why: a guest whose plain foreign address arrives as OTHER
        {
            "id": "a03d7b6f-5e8c-4fb0-8bc3-6c7e8f90a1b2",
            "name": "Marco Rossi",
            "first_name": "Marco",
            "last_name": "Rossi",
            "emails": [{"email": "m.rossi@partner.example", "type": "OTHER"}],
            "employment_status": "ACTIVE",
        },
        # why: a service account: no email at all and no given or family name
        {
            "id": "b14e8c70-6f9d-4ac1-9cd4-7d8f90a1b2c3",
            "name": "Scanner Empfang",
            "employment_status": "ACTIVE",
        },
        # why: a person without any address, sent as an empty list rather than left out
        {
            "id": "c25f9d81-7a0e-4bd2-8de5-8e90a1b2c3d4",
            "name": "Lena Vogel",
            "first_name": "Lena",
            "last_name": "Vogel",
            "emails": [],
            "employment_status": "ACTIVE",
        },
    ]
    anna, juergen, thao, kai, lisa, marco = (e["id"] for e in employees[:6])
    groups: list[dict[str, Any]] = [
        # why: a top-level group whose members are partly only in the nested group below
        {"id": engineering, "name": "Engineering", "type": "GROUP", "user_ids": [kai]},
        # why: nested by parent_id; holds the disabled account too
        {"id": platform, "name": "Platform", "type": "GROUP", "parent_id": engineering, "user_ids": [juergen, thao]},
        # why: a group with a guest in it
        {"id": sales, "name": "Vertrieb", "type": "GROUP", "user_ids": [anna, lisa]},
        # why: no `type` at all, as Unified may leave it out; two members, one of them a guest
        {"id": project, "name": "Projekt Atlas", "user_ids": [anna, marco]},
    ]
    return {"provider": "entra", "employees": employees, "groups": groups}


# ---- personio ------------------------------------------------------------------------------------------


def _personio() -> dict[str, Any]:
    def placed(*groups: tuple[str, str, str]) -> list[dict[str, str]]:
        return [{"id": gid, "name": name, "type": kind} for gid, name, kind in groups]

    sales = ("1001", "Sales", "DEPARTMENT")
    engineering = ("1002", "Engineering", "DEPARTMENT")
    marketing = ("1003", "Marketing", "DEPARTMENT")
    key_accounts = ("2001", "Key Accounts", "TEAM")
    platform = ("2002", "Platform", "TEAM")
    berlin = ("3001", "Berlin", "BRANCH")
    munich = ("3002", "München", "BRANCH")
    employees: list[dict[str, Any]] = [
        # why: the plain case: department, team and office, all only inside the employee
        {
            "id": "83752",
            "name": "Anna Schmidt",
            "first_name": "Anna",
            "last_name": "Schmidt",
            "emails": [{"email": f"anna.schmidt@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "hired_at": "2021-04-01T00:00:00Z",
            "groups": placed(sales, key_accounts, berlin),
        },
        # why: the same department id 1001 spelled "Sales DACH" here: one group, two names
        {
            "id": "83753",
            "name": "Jürgen Müller",
            "first_name": "Jürgen",
            "last_name": "Müller",
            "emails": [{"email": f"juergen.mueller@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "manager_id": "83752",
            "groups": placed(("1001", "Sales DACH", "DEPARTMENT"), key_accounts, munich),
        },
        # why: a leaver: INACTIVE with a past terminated_at
        {
            "id": "83760",
            "name": "Thảo Nguyễn",
            "first_name": "Thảo",
            "last_name": "Nguyễn",
            "emails": [{"email": f"thao.nguyen@{DOMAIN}", "type": "WORK"}],
            "employment_status": "INACTIVE",
            "terminated_at": "2026-01-31T00:00:00Z",
            "termination_reason": "Resignation",
            "groups": placed(engineering, platform, berlin),
        },
        # why: a planned leave: ACTIVE with a future terminated_at; shown as a leave date, changes nothing yet
        {
            "id": "83761",
            "name": "Kai Becker",
            "first_name": "Kai",
            "last_name": "Becker",
            "emails": [{"email": f"kai.becker@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "terminated_at": "2031-03-31T00:00:00Z",
            "groups": placed(engineering, platform, berlin),
        },
        # why: ACTIVE although the end date has passed (the status not yet updated): inactive for matching
        {
            "id": "83765",
            "name": "Bärbel Groß",
            "first_name": "Bärbel",
            "last_name": "Groß",
            "emails": [{"email": f"baerbel.gross@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "terminated_at": "2026-06-30T00:00:00Z",
            "groups": placed(sales, berlin),
        },
        # why: on parental leave in Personio (status `leave`): Unified has only ACTIVE and INACTIVE; no team
        {
            "id": "83770",
            "name": "Zoë O'Brien",
            "first_name": "Zoë",
            "last_name": "O'Brien",
            "emails": [{"email": f"zoe.obrien@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "groups": placed(marketing, munich),
        },
        # why: a new hire not yet placed: nothing in groups[], so in no group at all
        {
            "id": "83771",
            "name": "Søren Kjærsgaard",
            "first_name": "Søren",
            "last_name": "Kjærsgaard",
            "emails": [{"email": f"soeren.kjaersgaard@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "hired_at": "2026-12-01T00:00:00Z",
            "groups": [],
        },
    ]
    # why: what a group list built from the employees holds (1001 as "Sales", its first name); served only
    # with group_endpoint "listed"
    return {"provider": "personio", "employees": employees, "groups": listed_groups(employees)}


# ---- google --------------------------------------------------------------------------------------------


def _google() -> dict[str, Any]:
    all_staff = "100000000000000000001"
    engineering = "100000000000000000002"
    platform = "100000000000000000003"
    sales = "100000000000000000004"
    employees: list[dict[str, Any]] = [
        # why: the plain case, a direct member of a group
        {
            "id": "114563218920347651234",
            "name": "Anna Schmidt",
            "first_name": "Anna",
            "last_name": "Schmidt",
            "emails": [{"email": f"anna.schmidt@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
        },
        # why: a member of Platform only, a group that is itself a member of Engineering (nested twice)
        {
            "id": "114563218920347651235",
            "name": "Jürgen Müller",
            "first_name": "Jürgen",
            "last_name": "Müller",
            "emails": [{"email": f"juergen.mueller@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
        },
        # why: a suspended user: INACTIVE, still a member of their group
        {
            "id": "114563218920347651236",
            "name": "Thảo Nguyễn",
            "first_name": "Thảo",
            "last_name": "Nguyễn",
            "emails": [{"email": f"thao.nguyen@{DOMAIN}", "type": "WORK"}],
            "employment_status": "INACTIVE",
        },
        # why: an archived user (a former employee kept for their data): INACTIVE as well
        {
            "id": "114563218920347651237",
            "name": "Kai Becker",
            "first_name": "Kai",
            "last_name": "Becker",
            "emails": [{"email": f"kai.becker@{DOMAIN}", "type": "WORK"}],
            "employment_status": "INACTIVE",
        },
        # why: a direct member of two groups, one of them the parent of a group she is not in
        {
            "id": "114563218920347651238",
            "name": "Zoë O'Brien",
            "first_name": "Zoë",
            "last_name": "O'Brien",
            "emails": [{"email": f"zoe.obrien@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
        },
        # why: an alias is another address of the same user, never a user of its own (whether Unified lists
        # aliases at all is UNCONFIRMED); the primary address is the WORK one
        {
            "id": "114563218920347651239",
            "name": "Bärbel Groß",
            "first_name": "Bärbel",
            "last_name": "Groß",
            "emails": [
                {"email": f"baerbel.gross@{DOMAIN}", "type": "WORK"},
                {"email": f"b.gross@{DOMAIN}", "type": "OTHER"},
            ],
            "employment_status": "ACTIVE",
        },
        # why: in no group at all
        {
            "id": "114563218920347651240",
            "name": "Søren Kjærsgaard",
            "first_name": "Søren",
            "last_name": "Kjærsgaard",
            "emails": [{"email": f"soeren.kjaersgaard@{DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
        },
    ]
    anna, juergen, thao, kai, zoe, baerbel = (e["id"] for e in employees[:6])
    groups: list[dict[str, Any]] = [
        # why: the root, with no direct members: everyone in it is in through a nested group
        {"id": all_staff, "name": "All Staff", "type": "GROUP", "user_ids": []},
        # why: a member of All Staff; holds the archived user directly
        {"id": engineering, "name": "Engineering", "type": "GROUP", "parent_id": all_staff, "user_ids": [zoe, kai]},
        # why: nested two deep; holds the suspended user
        {"id": platform, "name": "Platform", "type": "GROUP", "parent_id": engineering, "user_ids": [juergen, thao]},
        # why: a second top-level branch, sharing a member with Engineering
        {"id": sales, "name": "Vertrieb", "type": "GROUP", "parent_id": all_staff, "user_ids": [anna, zoe, baerbel]},
    ]
    return {"provider": "google", "employees": employees, "groups": groups}
