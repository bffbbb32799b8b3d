"""Atomic load: a failure in the middle of the load leaves the tenant's table exactly as before,
and the next run converges. On SQLite and Postgres; the dropped connection on Postgres only."""

from __future__ import annotations

from typing import Any

import polars as pl
import psycopg
import pytest
from sqlalchemy import Connection, Engine, select, text

import store.load
from sources.normalize import normalize
from store.frames import read_employees
from store.load import LoadError
from store.models import Employee, RunChange
from store.repo import add_tenant
from tests.conftest import POSTGRES_ADMIN
from tests.runs import sync_snapshot
from tests.wire import person

# The one helper every bulk write of the load goes through (its name, whichever the load uses now).
WRITER = "copy_in" if hasattr(store.load, "copy_in") else "_bulk_insert"


def source(n: int, *, renamed: int | None = None) -> list[dict[str, Any]]:
    people = [person(f"u{i}", f"person{i}@acme.example", "Anna", f"Nummer{i}") for i in range(n)]
    if renamed is not None:
        people[renamed]["last_name"] = "Umbenannt"
    return people


def sync(engine: Engine, people: list[dict[str, Any]]) -> str:
    return sync_snapshot(engine, "acme", normalize(people, []))[0]


def snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    """Every column of every employee row, so that even a touched updated_at shows."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(Employee.__table__).order_by(Employee.id))]


def changes_of(engine: Engine, run_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(RunChange.__table__).where(RunChange.run_id == run_id)))


class Boom(Exception):
    pass


def test_an_exception_after_the_first_write_leaves_the_table_as_before_and_the_next_run_converges(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_tenant(engine, "acme")
    sync(engine, source(5))
    before = snapshot(engine)
    real = getattr(store.load, WRITER)

    def write_then_fail(conn: Connection, table: str, frame: pl.DataFrame) -> None:
        real(conn, table, frame)
        if table == "employees":  # the changed rows are updated and the new ones inserted by now
            raise Boom("injected after the employees insert")

    monkeypatch.setattr(store.load, WRITER, write_then_fail)
    changed = source(8, renamed=1)  # 3 new, 1 renamed
    with pytest.raises(Boom):
        sync(engine, changed)
    assert snapshot(engine) == before

    monkeypatch.setattr(store.load, WRITER, real)
    run_id = sync(engine, changed)
    rows = {r["source_user_id"]: r for r in read_employees(engine, "acme").iter_rows(named=True)}
    assert len(rows) == 8
    assert rows["u1"]["last_name"] == "Umbenannt"
    assert len(changes_of(engine, run_id)) == 4  # 3 created, 1 updated: the failed run left no half-record


@pytest.mark.postgres
def test_a_connection_dropped_between_statements_leaves_the_table_as_before(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from store.db import make_engine

    monkeypatch.setenv("PROVISIONING_DATABASE_URL", postgres_url)
    engine = make_engine(postgres_url)
    add_tenant(engine, "acme")
    sync(engine, source(5))
    before = snapshot(engine)
    real = getattr(store.load, WRITER)

    def write_then_get_cut_off(conn: Connection, table: str, frame: pl.DataFrame) -> None:
        real(conn, table, frame)
        if table == "employees":
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])  # the server ends the session

    monkeypatch.setattr(store.load, WRITER, write_then_get_cut_off)
    changed = source(8, renamed=1)
    with pytest.raises(LoadError, match="rolled back") as failure:
        sync(engine, changed)
    assert "@acme.example" not in str(failure.value)
    assert snapshot(engine) == before

    monkeypatch.setattr(store.load, WRITER, real)
    sync(engine, changed)  # the pool notices the dead connection and the run converges
    rows = {r["source_user_id"]: r for r in read_employees(engine, "acme").iter_rows(named=True)}
    assert len(rows) == 8 and rows["u1"]["last_name"] == "Umbenannt"
    engine.dispose()
