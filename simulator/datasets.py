"""Small named tenants seeded with the edge cases the pipeline must survive, in Unified.to's wire format.

Each record says why it is there. Tests and scenarios build on these rather than on the random
generator when they need to point at one specific case.
"""

from __future__ import annotations

from typing import Any

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
