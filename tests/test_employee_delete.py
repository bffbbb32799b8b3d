"""Manual deletes of flagged or unmanaged employees (issue 12, item 3), through the real `provision` process:
one by id, or all of a status older than an age; `synced` never; a dry run lists and deletes nothing; not at
a terminal it needs --yes; every delete is in the audit log with the ids it removed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from store.db import make_engine
from store.models import AuditEntry, Employee, utcnow
from store.repo import add_employee, add_tenant
from tests.processes import clean_env, run_provision
from tests.tables import db_state

# why: every test here is the real `provision` process (3-5 s each to start on 2 cores)
pytestmark = pytest.mark.slow


def tenant_with_flags(url: str) -> dict[str, int]:
    """acme: a synced, two non_matching (one flagged 40 days ago), a terminated and an unmanaged employee."""
    engine = make_engine(url)
    add_tenant(engine, "acme")
    ids = {}
    for email, status, days in [
        ("synced@acme.example", "synced", 0),
        ("old-flag@acme.example", "non_matching", 40),
        ("new-flag@acme.example", "non_matching", 2),
        ("disabled@acme.example", "terminated", 40),
        ("by-hand@acme.example", "unmanaged", 40),
    ]:
        ids[email] = add_employee(engine, "acme", email=email, first_name="Anna", last_name="Muster").id
        with engine.begin() as conn:
            conn.execute(
                update(Employee)
                .where(Employee.id == ids[email])
                .values(status=status, updated_at=utcnow() - timedelta(days=days))
            )
    engine.dispose()
    return ids


def emails(url: str) -> list[str]:
    with make_engine(url).connect() as conn:
        return sorted(conn.execute(select(Employee.email)).scalars())


def env_for(tmp_path: Path, url: str) -> dict[str, str]:
    return clean_env(tmp_path) | {"PROVISIONING_DATABASE_URL": url}


def test_a_synced_employee_or_status_is_refused_with_one_sentence_and_nothing_deleted(
    tmp_path: Path, sqlite_url: str
) -> None:
    ids = tenant_with_flags(sqlite_url)
    before = db_state(sqlite_url)
    by_id = run_provision(
        "employee", "delete", "acme", "--id", str(ids["synced@acme.example"]), env=env_for(tmp_path, sqlite_url)
    )
    assert by_id.returncode == 1 and "the source is the truth" in by_id.stderr and len(by_id.stderr.splitlines()) == 1
    by_status = run_provision(
        "employee", "delete", "acme", "--status", "synced", "--yes", env=env_for(tmp_path, sqlite_url)
    )
    assert by_status.returncode == 1 and "are not deleted by hand" in by_status.stderr
    neither = run_provision("employee", "delete", "acme", env=env_for(tmp_path, sqlite_url))
    assert neither.returncode == 1 and neither.stderr.strip() == "Error: Give either --id ID or --status STATUS."
    assert db_state(sqlite_url) == before


def test_a_status_older_than_an_age_is_listed_by_a_dry_run_and_deleted_with_yes(
    tmp_path: Path, sqlite_url: str
) -> None:
    ids = tenant_with_flags(sqlite_url)
    env = env_for(tmp_path, sqlite_url)
    before = db_state(sqlite_url)
    dry = run_provision(
        "employee", "delete", "acme", "--status", "non_matching", "--older-than", "30d", "--dry-run", env=env
    )
    assert dry.returncode == 0 and "old-flag@acme.example" in dry.stdout and "new-flag@acme.example" not in dry.stdout
    assert "1 non_matching employee(s) would be deleted (dry run: nothing deleted)." in dry.stdout
    assert db_state(sqlite_url) == before

    unasked = run_provision("employee", "delete", "acme", "--status", "non_matching", "--older-than", "30d", env=env)
    assert unasked.returncode == 1 and "needs --yes" in unasked.stderr  # stdin is no terminal here
    assert db_state(sqlite_url) == before

    done = run_provision(
        "employee", "delete", "acme", "--status", "non_matching", "--older-than", "30d", "--yes", env=env
    )
    assert done.returncode == 0 and "1 non_matching employee(s) deleted from acme." in done.stdout
    assert emails(sqlite_url) == [
        "by-hand@acme.example", "disabled@acme.example", "new-flag@acme.example", "synced@acme.example"
    ]  # fmt: skip
    one = run_provision("employee", "delete", "acme", "--id", str(ids["disabled@acme.example"]), env=env)
    assert one.returncode == 0
    with make_engine(sqlite_url).connect() as conn:
        audit = [(e.actor, e.action, e.old) for e in conn.execute(select(AuditEntry).order_by(AuditEntry.id))]
    assert (
        "cli",
        "employees_deleted",
        {"employees": [ids["old-flag@acme.example"]], "status": "non_matching"},
    ) in audit
    assert ("cli", "employee_deleted", {"employee": ids["disabled@acme.example"], "status": "terminated"}) in audit
