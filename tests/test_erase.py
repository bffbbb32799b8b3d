"""GDPR erasure: `provision erase TENANT --email E` deletes the employee and scrubs their personal data
from the run history (counts stay); a later sync recreates them only if they are still in scope."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from pipeline import Selection
from sources.normalize import normalize
from store.erase import erase_employee
from store.frames import read_employees
from store.models import Run, RunChange
from store.repo import StoreError, add_tenant
from tests.runs import sync_snapshot
from tests.upstreams import staff
from tests.wire import group

PERSONAL = [f"{side}_{f}" for f in ("email", "first_name", "last_name", "display_name") for side in ("old", "new")]


def sync(engine: Engine, people: list[dict[str, Any]], members: list[str]) -> str:
    """A run of the pipeline's stages (no flow) over the members of group g; its run id."""
    snapshot = normalize(people, [group("g", "G", members)])
    return sync_snapshot(engine, "acme", snapshot, selection=Selection(group_ids=("g",)))[0]


def changes(engine: Engine, source_user_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(RunChange.__table__).where(RunChange.source_user_id == source_user_id)))


def links(engine: Engine) -> dict[str, int]:
    return {r["source_user_id"]: r["employee_id"] for r in read_employees(engine, "acme").iter_rows(named=True)}


@pytest.fixture
def synced_twice(engine: Engine) -> list[dict[str, Any]]:
    """Two runs: all five created, then u1's email and u2's name changed."""
    add_tenant(engine, "acme")
    people = staff(5)
    sync(engine, people, [p["id"] for p in people])
    people[1]["emails"][0]["email"] = "renamed1@acme.example"
    people[2]["last_name"] = "Neu"
    sync(engine, people, [p["id"] for p in people])
    return people


def test_erasure_deletes_the_employee_and_scrubs_names_and_emails_but_keeps_actions_and_counts(
    engine: Engine, synced_twice: list[dict[str, Any]]
) -> None:
    with engine.connect() as conn:
        counts_before = dict(conn.execute(select(Run.id, Run.counts)).all())
    others_before = changes(engine, "u2")
    erased_id = links(engine)["u1"]

    erasure = erase_employee(engine, "acme", "RENAMED1@acme.example")  # compared normalized

    assert erasure.employee_id == erased_id and erasure.source_user_id == "u1"
    assert "u1" not in links(engine)
    rows = {r.action: r for r in changes(engine, "u1")}
    assert sorted(rows) == ["created", "joined", "updated"]  # the history of what happened stays...
    assert all(getattr(r, column) is None for r in rows.values() for column in PERSONAL)  # ...without who it was
    assert rows["updated"].changed_fields == "email"
    assert erasure.scrubbed_changes == 2
    assert changes(engine, "u2") == others_before  # nobody else's record is touched
    with engine.connect() as conn:
        assert dict(conn.execute(select(Run.id, Run.counts)).all()) == counts_before
        quoted = conn.execute(
            select(RunChange.source_user_id).where(
                (RunChange.old_email == "person1@acme.example") | (RunChange.new_email == "renamed1@acme.example")
            )
        ).all()
    assert quoted == []


def test_a_later_sync_recreates_an_erased_person_only_while_they_are_in_scope(
    engine: Engine, synced_twice: list[dict[str, Any]]
) -> None:
    people = synced_twice
    erase_employee(engine, "acme", "renamed1@acme.example")
    erase_employee(engine, "acme", "person3@acme.example")
    # why: the source is the truth; u1 is still in the selected group, u3 was moved out of it
    run_id = sync(engine, people, ["u0", "u1", "u2", "u4"])
    now = links(engine)
    assert "u1" in now  # recreated, as a new employee
    assert "u3" not in now  # out of scope: not recreated
    with engine.connect() as conn:
        actions = set(
            conn.execute(select(RunChange.source_user_id, RunChange.action).where(RunChange.run_id == run_id)).all()
        )
    assert ("u1", "created") in actions and ("u1", "joined") in actions  # and back in the selected group
    assert not any(who == "u3" for who, _ in actions)


def test_erasing_an_unknown_email_is_refused_and_changes_nothing(
    engine: Engine, synced_twice: list[dict[str, Any]]
) -> None:
    before = links(engine)
    with pytest.raises(StoreError, match="no employee with that email"):
        erase_employee(engine, "acme", "nobody@acme.example")
    assert links(engine) == before


def test_provision_erase_command(engine: Engine, synced_twice: list[dict[str, Any]]) -> None:
    from cli.main import app

    runner = CliRunner()
    done = runner.invoke(app, ["erase", "acme", "--email", "person0@acme.example", "--yes"])
    assert done.exit_code == 0, done.output
    assert "erased" in done.output and "person0" not in done.output
    assert "u0" not in links(engine)
    again = runner.invoke(app, ["erase", "acme", "--email", "person0@acme.example", "--yes"])
    assert again.exit_code == 1
    assert "no employee with that email" in again.output
    unknown = runner.invoke(app, ["erase", "nope", "--email", "person2@acme.example", "--yes"])
    assert unknown.exit_code == 1 and "Unknown tenant" in unknown.output
    refused = runner.invoke(app, ["erase", "acme", "--email", "person2@acme.example"], input="n\n")
    assert refused.exit_code != 0
    assert "u2" in links(engine)  # not confirmed: nothing erased
