"""Load and flag on a real database: one transaction, only changed rows written, nothing deleted."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import Engine, select, text

from store.frames import read_employees
from store.load import LoadError, apply_plan
from store.models import Employee, RunChange, SourceGroup
from store.repo import add_employee, add_tenant, replace_groups, run_changes, start_run
from tasks.match import match
from tasks.validate import validate_plan
from tests.frames import source_user, users
from tests.runs import snapshot_of, sync_snapshot

NO_QUARANTINE = pl.DataFrame(schema={"record": pl.Int64(), "source_user_id": pl.String(), "reason": pl.String()})


def sync(engine: Engine, tenant: str, src: pl.DataFrame, *, dry_run: bool = False) -> tuple[str, pl.DataFrame, int]:
    run_id, planned = sync_snapshot(engine, tenant, snapshot_of(src), dry_run=dry_run)
    assert planned.written is not None
    return run_id, planned.plan, planned.written


def state(engine: Engine, tenant: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(Employee.id, Employee.email, Employee.first_name, Employee.status, Employee.source_user_id)
                .where(Employee.tenant_id == tenant)
                .order_by(Employee.id)
            )
        ]


@pytest.fixture
def tenant(engine: Engine) -> str:
    add_tenant(engine, "acme")
    return "acme"


def test_first_sync_creates_links_and_flags_in_one_go(engine: Engine, tenant: str) -> None:
    add_employee(engine, tenant, email="Anna.Muster@ACME.de", first_name="Anna", last_name="Muster")
    add_employee(engine, tenant, email="left@acme.de", first_name="Lea", last_name="Left")
    src = users(source_user("u1", "anna.muster@acme.de"), source_user("u2", "zoë@acme.de", first_name="Zoë"))
    run_id, _, written = sync(engine, tenant, src)
    rows = {r[1]: r for r in state(engine, tenant)}
    assert rows["anna.muster@acme.de"][3:] == ("synced", "u1")
    assert rows["left@acme.de"][3:] == ("non_matching", None)
    assert rows["zoë@acme.de"][2:] == ("Zoë", "synced", "u2")
    assert written == 3
    actions = sorted((c["action"], c["source_user_id"]) for c in run_changes(engine, run_id))
    assert actions == [("created", "u2"), ("linked", "u1"), ("non_matching", None)]
    created = next(c for c in run_changes(engine, run_id) if c["action"] == "created")
    assert created["employee_id"] == rows["zoë@acme.de"][0]
    assert created["new_email"] == "zoë@acme.de"


def test_second_sync_of_an_unchanged_source_writes_nothing(engine: Engine, tenant: str) -> None:
    src = users(source_user("u1", "a@acme.de"), source_user("u2", "b@acme.de", active=False))
    sync(engine, tenant, src)
    before = state(engine, tenant)
    with engine.connect() as conn:
        stamps = conn.execute(text("SELECT id, updated_at FROM employees ORDER BY id")).all()
    run_id, plan, written = sync(engine, tenant, src)
    assert written == 0
    assert state(engine, tenant) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, updated_at FROM employees ORDER BY id")).all() == stamps
    assert run_changes(engine, run_id) == []
    assert set(plan.get_column("action").to_list()) == {"unchanged", "skipped_inactive"}


def test_only_the_changed_employee_is_written(engine: Engine, tenant: str) -> None:
    src = users(*[source_user(f"u{i}", f"p{i}@acme.de") for i in range(20)])
    sync(engine, tenant, src)
    changed = src.with_columns(
        first_name=pl.when(pl.col("user_id") == "u7").then(pl.lit("Jürgen")).otherwise(pl.col("first_name"))
    )
    run_id, _, written = sync(engine, tenant, changed)
    assert written == 1
    [change] = run_changes(engine, run_id)
    assert (change["action"], change["changed_fields"]) == ("updated", "first_name")
    assert (change["old_first_name"], change["new_first_name"]) == ("Anna", "Jürgen")
    assert change["old_email"] is None  # unchanged fields are not copied into the audit record


def test_dry_run_records_the_plan_but_writes_no_employee(engine: Engine, tenant: str) -> None:
    add_employee(engine, tenant, email="a@acme.de", first_name="A", last_name="B")
    before = state(engine, tenant)
    run_id, _, written = sync(
        engine, tenant, users(source_user("u1", "a@acme.de"), source_user("u2", "n@acme.de")), dry_run=True
    )
    assert written == 0
    assert state(engine, tenant) == before
    assert sorted(c["action"] for c in run_changes(engine, run_id)) == ["created", "linked"]


def test_a_failure_inside_the_load_leaves_the_table_as_it_was(engine: Engine, tenant: str) -> None:
    add_employee(engine, tenant, email="a@acme.de", first_name="A", last_name="B")
    before = state(engine, tenant)
    run_id = start_run(engine, tenant, trigger="cli", parameters={}, flow_run_id=None, dry_run=False)
    plan = validate_plan(
        match(users(source_user("u1", "a@acme.de"), source_user("u2", "n@acme.de")), read_employees(engine, tenant))
    )
    # A second employee with the new hire's email appears behind the plan's back: the insert fails.
    add_employee(engine, tenant, email="N@acme.de", first_name="Late", last_name="Comer")
    before = state(engine, tenant)
    with pytest.raises(LoadError, match="rolled back") as failure:
        apply_plan(engine, tenant_id=tenant, run_id=run_id, plan=plan, quarantine=NO_QUARANTINE, dry_run=False)
    assert "n@acme.de" not in str(failure.value).lower()  # the database's DETAIL quotes the email
    assert state(engine, tenant) == before
    with engine.connect() as conn:
        assert conn.execute(select(RunChange).where(RunChange.run_id == run_id)).all() == []


def test_one_tenants_load_never_touches_another_tenant(engine: Engine, tenant: str) -> None:
    add_tenant(engine, "other")
    add_employee(engine, "other", email="a@acme.de", first_name="Other", last_name="Person")
    other_before = state(engine, "other")
    sync(engine, tenant, users(source_user("u1", "a@acme.de")))
    assert state(engine, "other") == other_before
    assert [r[3:] for r in state(engine, tenant)] == [("synced", "u1")]


def test_the_group_list_is_rewritten_only_when_the_source_changed_it(engine: Engine, tenant: str) -> None:
    groups = pl.DataFrame(
        {"group_id": ["g1", "g2"], "name": ["Sales", "Ops"], "parent_id": [None, "g1"], "member_count": [3, 0]}
    )

    def stored() -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    select(SourceGroup.group_id, SourceGroup.name, SourceGroup.parent_id, SourceGroup.member_count)
                    .where(SourceGroup.tenant_id == tenant)
                    .order_by(SourceGroup.group_id)
                )
            ]

    def refreshed() -> set[object]:
        with engine.connect() as conn:
            return set(conn.scalars(select(SourceGroup.refreshed_at).where(SourceGroup.tenant_id == tenant)))

    replace_groups(engine, tenant, groups)
    first = refreshed()
    replace_groups(engine, tenant, groups)
    assert stored() == [("g1", "Sales", None, 3), ("g2", "Ops", "g1", 0)]
    assert refreshed() != first and len(refreshed()) == 1  # read again: every row says so
    # a renamed group, a member more, one gone and one new: the list is the source's again
    changed = pl.DataFrame(
        {"group_id": ["g1", "g3"], "name": ["Sales EU", "New"], "parent_id": [None, None], "member_count": [4, 1]}
    )
    replace_groups(engine, tenant, changed)
    assert stored() == [("g1", "Sales EU", None, 4), ("g3", "New", None, 1)]
    replace_groups(engine, tenant, changed.head(0))
    assert stored() == []
