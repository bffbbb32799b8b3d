"""Why an employee is flagged, as the store tells it: the reason of the newest run that flagged it, on
SQLite and Postgres, through the pipeline's own stages (no Prefect)."""

from __future__ import annotations

from sqlalchemy import Engine

from store.repo import add_employee, add_tenant, employee_page, list_employees
from tasks.match import DISABLED, GONE
from tests.frames import source_user, users
from tests.runs import snapshot_of, sync_snapshot


def reason_of(engine: Engine, email: str) -> tuple[str, str | None]:
    _, page = employee_page(engine, "acme", status=None, search=email, offset=0, limit=10)
    (row,) = page
    (listed,) = [e for e in list_employees(engine, "acme") if e["email"] == email]
    assert listed["reason"] == row["reason"]  # the CLI's list says the same
    return row["status"], row["reason"]


def test_a_flagged_employee_shows_the_reason_of_the_newest_run_that_flagged_it(engine: Engine) -> None:
    add_tenant(engine, "acme")
    add_employee(engine, "acme", email="anna@acme.example", first_name="Anna", last_name="Muster")
    anna = source_user("u1", "anna@acme.example")

    sync_snapshot(engine, "acme", snapshot_of(users(anna)))  # linked
    assert reason_of(engine, "anna@acme.example") == ("synced", None)
    _, gone = sync_snapshot(engine, "acme", snapshot_of(users()))  # gone from the source
    assert reason_of(engine, "anna@acme.example") == ("non_matching", GONE)
    assert (gone.counts["flagged_gone"], gone.counts["flagged_moved_out"]) == (1, 0)  # counted per reason
    sync_snapshot(engine, "acme", snapshot_of(users(anna)))  # back: reactivated, no reason
    assert reason_of(engine, "anna@acme.example") == ("synced", None)
    sync_snapshot(engine, "acme", snapshot_of(users(source_user("u1", "anna@acme.example", active=False))))
    assert reason_of(engine, "anna@acme.example") == ("terminated", DISABLED)  # the newest flag, not the first
