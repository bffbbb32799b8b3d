"""Invariants of the real pipeline (validate -> match -> validate plan -> load) on SQLite and Postgres.

The `engine` fixture gives one fresh database per test function, so every hypothesis example works in a
tenant of its own (a new uuid) inside that database.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from domain.emails import normalize_email
from store.models import Employee, RunChange
from store.repo import add_tenant, status_totals
from tasks.report import COUNTED_ACTIONS, totals
from tasks.validate import MostlyInvalidError
from tests.frames import source_user, users
from tests.runs import snapshot_of, sync_snapshot

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Small pools, so that links hit, emails collide across spellings, and source users share emails.
USER_IDS = [f"u{i}" for i in range(7)]
LOCAL_PARTS = ["anna", "ben", "cara", "dave", "jürgen", "zoë"]
NAMES = ["Anna", "Ben", "Zoë"]


def spell(local: str, variant: int) -> str:
    """One email address in one of several spellings that normalize to the same thing."""
    address = f"{local}@acme.de"
    if variant == 1:
        return address.upper()
    if variant == 2:
        return address.title()
    if variant == 3:
        return unicodedata.normalize("NFD", address)  # decomposed umlauts
    return address


EMAIL = st.builds(spell, st.sampled_from(LOCAL_PARTS), st.integers(min_value=0, max_value=3))


@dataclass(frozen=True)
class EmployeeSpec:
    email: str
    link: str | None
    status: str
    first_name: str


@st.composite
def employee_specs(draw: st.DrawFn) -> list[EmployeeSpec]:
    """A tenant's employees as a sync could have left them: unique emails, unique links."""
    emails = draw(st.lists(EMAIL, max_size=6, unique_by=normalize_email))
    specs = []
    links_taken: set[str] = set()
    for email in emails:
        link = draw(st.none() | st.sampled_from(USER_IDS))
        if link in links_taken:
            link = None
        if link is None:
            status = draw(st.sampled_from(["unmanaged", "non_matching"]))
        else:
            links_taken.add(link)
            status = draw(st.sampled_from(["synced", "terminated", "non_matching"]))
        specs.append(EmployeeSpec(email, link, status, draw(st.sampled_from(NAMES))))
    return specs


SOURCE_USER = st.builds(
    lambda user_id, email, active, first: source_user(user_id, email, active=active, first_name=first),
    st.sampled_from(USER_IDS),
    EMAIL | st.just(None),  # a user without usable email now and then: quarantined, its employee held
    st.booleans(),
    st.sampled_from(NAMES),
)


def source_users() -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(SOURCE_USER, max_size=7, unique_by=lambda u: u["user_id"])


@st.composite
def mutated(draw: st.DrawFn, before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The next answer of the same source: users leave, are disabled, rehired, renamed, change email."""
    after = []
    for user in before:
        change = draw(st.sampled_from(["keep", "keep", "drop", "toggle", "email", "name"]))
        if change == "drop":
            continue
        if change == "toggle":
            active = user["employment_status"] != "active"
            user = source_user(user["user_id"], user["email"], active=active, first_name=user["first_name"])
        elif change == "email":
            user = source_user(
                user["user_id"],
                draw(EMAIL),
                active=user["employment_status"] == "active",
                first_name=user["first_name"],
            )
        elif change == "name":
            user = {**user, "first_name": draw(st.sampled_from(NAMES)), "display_name": "Renamed"}
        after.append(user)
    ids = {u["user_id"] for u in after}
    after += [u for u in draw(source_users()) if u["user_id"] not in ids]
    return after


@st.composite
def source_sequences(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """One to three consecutive answers of a tenant's source."""
    first = draw(source_users())
    sequence = [first]
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        sequence.append(draw(mutated(sequence[-1])))
    return sequence


# ---- the pipeline on a real database ---------------------------------------------------------------


def new_tenant(engine: Engine, specs: list[EmployeeSpec]) -> str:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    add_tenant(engine, tenant)
    with Session(engine) as session, session.begin():
        session.add_all(
            Employee(
                tenant_id=tenant,
                email=spec.email,
                email_norm=normalize_email(spec.email),
                first_name=spec.first_name,
                last_name="Muster",
                display_name=f"{spec.first_name} Muster",
                employment_status="inactive" if spec.status == "terminated" else "active",
                source_user_id=spec.link,
                status=spec.status,
            )
            for spec in specs
        )
    return tenant


@dataclass(frozen=True)
class Run:
    run_id: str
    plan: pl.DataFrame
    counts: dict[str, int]
    written: int


def sync(engine: Engine, tenant: str, rows: list[dict[str, Any]]) -> Run | None:
    """One run of the stages after extract; None when validation stops it (nothing is written then)."""
    src = users(*rows)
    try:
        run_id, planned = sync_snapshot(engine, tenant, snapshot_of(src))
    except MostlyInvalidError:
        return None
    assert planned.written is not None
    return Run(run_id, planned.plan, planned.counts, planned.written)


def table(engine: Engine, tenant: str) -> dict[int, dict[str, Any]]:
    """Every column of every employee row of the tenant, by id."""
    with engine.connect() as conn:
        rows = conn.execute(select(Employee.__table__).where(Employee.tenant_id == tenant)).mappings().all()
    return {row["id"]: dict(row) for row in rows}


# ---- properties -------------------------------------------------------------------------------------


@PROPERTY
@given(specs=employee_specs(), sources=source_sequences())
def test_second_run_on_an_unchanged_source_changes_nothing(
    engine: Engine, specs: list[EmployeeSpec], sources: list[list[dict[str, Any]]]
) -> None:
    tenant = new_tenant(engine, specs)
    for rows in sources:
        sync(engine, tenant, rows)
    before = table(engine, tenant)
    again = sync(engine, tenant, sources[-1])
    if again is None:
        return
    assert again.written == 0, again.plan.filter(pl.col("changed_fields").is_not_null()).to_dicts()
    assert table(engine, tenant) == before  # updated_at included
    assert all(again.counts[action] == 0 for action in COUNTED_ACTIONS if action != "unchanged")


@PROPERTY
@given(specs=employee_specs(), sources=source_sequences())
def test_no_employee_is_ever_deleted(
    engine: Engine, specs: list[EmployeeSpec], sources: list[list[dict[str, Any]]]
) -> None:
    tenant = new_tenant(engine, specs)
    seen = set(table(engine, tenant))
    for rows in [*sources, []]:  # ending with a source that lists nobody
        sync(engine, tenant, rows)
        now = set(table(engine, tenant))
        assert seen <= now
        seen = now


@PROPERTY
@given(specs=employee_specs(), other_specs=employee_specs(), sources=source_sequences())
def test_one_tenants_run_never_changes_another_tenants_rows(
    engine: Engine,
    specs: list[EmployeeSpec],
    other_specs: list[EmployeeSpec],
    sources: list[list[dict[str, Any]]],
) -> None:
    # Both tenants draw from the same small pools of emails and source ids, so they overlap.
    tenant = new_tenant(engine, specs)
    other = new_tenant(engine, other_specs)
    other_before = table(engine, other)
    runs = [run for rows in sources if (run := sync(engine, tenant, rows)) is not None]
    assert table(engine, other) == other_before
    with engine.connect() as conn:
        changes = conn.execute(
            select(RunChange.tenant_id, RunChange.employee_id).where(RunChange.run_id.in_([run.run_id for run in runs]))
        ).all()
    own = set(table(engine, tenant))
    assert {tenant_id for tenant_id, _ in changes} <= {tenant}
    assert {employee_id for _, employee_id in changes if employee_id is not None} <= own


@PROPERTY
@given(specs=employee_specs(), sources=source_sequences())
def test_after_every_run_emails_and_links_are_unique_and_the_database_accepts_the_plan(
    engine: Engine, specs: list[EmployeeSpec], sources: list[list[dict[str, Any]]]
) -> None:
    tenant = new_tenant(engine, specs)
    for rows in sources:
        sync(engine, tenant, rows)  # an IntegrityError here means match + validate let a bad plan through
        rows_now = list(table(engine, tenant).values())
        norms = [row["email_norm"] for row in rows_now]
        links = [row["source_user_id"] for row in rows_now if row["source_user_id"] is not None]
        assert len(norms) == len(set(norms))
        assert len(links) == len(set(links))
        assert all(row["email_norm"] == normalize_email(row["email"]) for row in rows_now)


def derived_from_table(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]]) -> dict[str, int]:
    """The write counts as the table's before/after states tell them, in the plan's order of precedence."""
    derived = dict.fromkeys(["created", "linked", "updated", "terminated", "non_matching", "reactivated"], 0)
    derived["created"] = len(after.keys() - before.keys())
    for employee_id, old in before.items():
        new = after[employee_id]
        if new == old:
            continue
        if new["status"] == "terminated" != old["status"]:  # linked to an inactive source user included
            derived["terminated"] += 1
        elif old["source_user_id"] is None and new["source_user_id"] is not None:
            derived["linked"] += 1
        elif new["status"] == "non_matching" != old["status"]:
            derived["non_matching"] += 1
        elif new["status"] == "synced" and old["status"] in ("terminated", "non_matching"):
            derived["reactivated"] += 1
        else:
            derived["updated"] += 1
    return derived


@PROPERTY
@given(specs=employee_specs(), sources=source_sequences())
def test_every_count_equals_the_employees_whose_row_changed_accordingly(
    engine: Engine, specs: list[EmployeeSpec], sources: list[list[dict[str, Any]]]
) -> None:
    tenant = new_tenant(engine, specs)
    for rows in sources:
        before = table(engine, tenant)
        run = sync(engine, tenant, rows)
        if run is None:
            continue
        after = table(engine, tenant)
        derived = derived_from_table(before, after)
        assert {action: run.counts[action] for action in derived} == derived
        assert run.written == sum(derived.values())
        assert run.counts["unchanged"] <= len(before)
        became_non_matching = sum(
            1
            for i, row in after.items()
            if row["status"] == "non_matching" and before.get(i, {}).get("status") != row["status"]
        )
        assert run.counts["non_matching"] == became_non_matching
        assert totals(run.plan) == status_totals(engine, tenant)


# ---- regressions the properties found (plain examples) -----------------------------------------------


def emails_by_link(engine: Engine, tenant: str) -> dict[str | None, str]:
    return {row["source_user_id"]: row["email"] for row in table(engine, tenant).values()}


def test_new_hire_takes_over_the_email_a_linked_employee_moves_away_from_in_the_same_run(engine: Engine) -> None:
    # Found by the idempotence property: the new hire was a conflict in the first run (the address was
    # still held) and created by the second run on the same source.
    tenant = new_tenant(engine, [EmployeeSpec("jürgen@acme.de", "u1", "synced", "Anna")])
    src = [source_user("u1", "dave@acme.de"), source_user("u2", "jürgen@acme.de")]
    first = sync(engine, tenant, src)
    assert first is not None
    assert (first.counts["updated"], first.counts["created"], first.counts["conflicts"]) == (1, 1, 0)
    assert emails_by_link(engine, tenant) == {"u1": "dave@acme.de", "u2": "jürgen@acme.de"}
    second = sync(engine, tenant, src)
    assert second is not None and second.written == 0


def test_chain_of_email_changes_is_applied_in_one_run(engine: Engine) -> None:
    # u2 leaves b@ for c@ and u1 takes b@: the final addresses are unique, so both apply at once.
    tenant = new_tenant(
        engine, [EmployeeSpec("a@acme.de", "u1", "synced", "Anna"), EmployeeSpec("b@acme.de", "u2", "synced", "Ben")]
    )
    src = [source_user("u1", "b@acme.de"), source_user("u2", "c@acme.de")]
    first = sync(engine, tenant, src)
    assert first is not None and first.counts["updated"] == 2
    assert emails_by_link(engine, tenant) == {"u1": "b@acme.de", "u2": "c@acme.de"}
    second = sync(engine, tenant, src)
    assert second is not None and second.written == 0


def test_two_employees_swapping_emails_in_the_source_swap_in_one_run(engine: Engine) -> None:
    tenant = new_tenant(
        engine, [EmployeeSpec("a@acme.de", "u1", "synced", "Anna"), EmployeeSpec("b@acme.de", "u2", "synced", "Ben")]
    )
    src = [source_user("u1", "b@acme.de"), source_user("u2", "a@acme.de")]
    first = sync(engine, tenant, src)
    assert first is not None and first.counts["updated"] == 2
    assert emails_by_link(engine, tenant) == {"u1": "b@acme.de", "u2": "a@acme.de"}


def test_email_change_onto_an_address_another_employee_keeps_is_still_a_conflict(engine: Engine) -> None:
    # The chain rule must not weaken rule 6: u2's move to c@ is blocked (an unmanaged employee keeps c@),
    # so u2 keeps b@, so u1's move onto b@ is blocked too.
    tenant = new_tenant(
        engine,
        [
            EmployeeSpec("a@acme.de", "u1", "synced", "Anna"),
            EmployeeSpec("b@acme.de", "u2", "synced", "Ben"),
            EmployeeSpec("c@acme.de", None, "unmanaged", "Zoë"),
        ],
    )
    src = [source_user("u1", "b@acme.de"), source_user("u2", "c@acme.de"), source_user("u3", "a@acme.de")]
    first = sync(engine, tenant, src)
    assert first is not None
    assert first.counts["conflicts"] == 3  # u1, u2 and the new hire u3 (a@ stays with u1's employee)
    assert emails_by_link(engine, tenant) == {"u1": "a@acme.de", "u2": "b@acme.de", None: "c@acme.de"}
    second = sync(engine, tenant, src)
    assert second is not None and second.written == 0
