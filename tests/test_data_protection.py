"""Data protection (issue 13; design.md, "Data protection"): the access export of one person, suppression after
erasure, retention of the run history, and offboarding a whole tenant, on SQLite and Postgres.

Each promise is checked on table state: the export holds a person's own rows and nobody else's; a suppressed
person stays out of two syncs, is never named in what those runs record, and comes back once lifted; retention
scrubs only runs older than the period, and only the tenant's; after `tenant delete` no row of any table (found
through the models, so a new table is covered) names the tenant, and the other tenant is exactly as it was.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert, select, update
from typer.testing import CliRunner

from admin.operations import CLI, TenantBusy, create_employee, erase, queue_sync
from admin.privacy import UnknownPerson, change_privacy, delete_tenant, export_person, lift
from api.app import create_app
from cli.main import app as cli_app
from domain.suppression import SuppressionKeyError
from pipeline import Progress, Selection, plan_snapshot
from settings import Settings
from simulator.inprocess import SyncASGITransport
from sources.normalize import normalize
from store.access import create_key
from store.frames import read_employees
from store.locks import TenantBusyError, tenant_lock
from store.models import Base, ConnectState, Run, RunChange, TenantLock, utcnow
from store.offboard import tenant_rows
from store.repo import StoreNotFound, add_tenant, finish_run
from store.retention import batches, scrub_expired
from store.suppressions import privacy_settings
from tasks.report import summary_markdown
from tests.processes import clean_env, run_provision
from tests.runs import sync_snapshot
from tests.tables import db_state
from tests.upstreams import TOKEN, Upstream, setup_tenant
from tests.wire import group, person

SECRET = "test-suppression-secret-5d1e9b"
PERSONAL = [f"{side}_{f}" for f in ("email", "first_name", "last_name", "display_name") for side in ("old", "new")]
IN_G = Selection(group_ids=("g",))


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PROVISIONING_SUPPRESSION_SECRET", SECRET)
    return SECRET


def sync(engine: Engine, people: list[dict[str, Any]], tenant: str = "acme", members: list[str] | None = None) -> str:
    """A recorded run of the pipeline (no flow) over the members of group g (all the people by default), its run
    row finished with its counts as the flow finishes it."""
    ids = [p["id"] for p in people] if members is None else members
    run_id, planned = sync_snapshot(engine, tenant, normalize(people, [group("g", "Team G", ids)]), selection=IN_G)
    finish_run(engine, run_id, outcome="succeeded", counts=planned.counts)
    return run_id


def employee_ids(engine: Engine, tenant: str = "acme") -> dict[str, int]:
    """{source user id: employee id} of the tenant's linked employees."""
    frame = read_employees(engine, tenant)
    return {r["source_user_id"]: r["employee_id"] for r in frame.iter_rows(named=True) if r["source_user_id"]}


def changes_of(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(RunChange.__table__).where(RunChange.run_id == run_id).order_by(RunChange.seq))
        return [dict(r._mapping) for r in rows]


def values_in(document: Any) -> set[str]:
    """Every string anywhere in a JSON-ready document."""
    if isinstance(document, dict):
        return set().union(*(values_in(v) for v in document.values())) if document else set()
    if isinstance(document, list):
        return set().union(*(values_in(v) for v in document)) if document else set()
    return {document} if isinstance(document, str) else set()


# ---- the access export ------------------------------------------------------------------------------------

DORA = person("u-dora", "Dora.Example@acme.example", "Dora", "Erstname")
OTHERS = [
    person("u-emil", "emil@acme.example", "Emil", "Zweiter"),
    person("u-fritz", "fritz@acme.example", "Fritz", "Dritter"),
]


@pytest.fixture
def renamed_twice(engine: Engine) -> dict[str, Any]:
    """Dora, added by hand, then linked by a sync and renamed twice at the source; Emil and Fritz beside her;
    Emil's hand-made twin in another tenant with Dora's address; Fritz erased (his audit entry names his id)."""
    add_tenant(engine, "acme")
    add_tenant(engine, "globex")
    create_employee(
        engine, "acme", email="dora.example@acme.example", first_name="Dora", last_name="Erstname", actor=CLI
    )
    create_employee(
        engine, "globex", email="dora.example@acme.example", first_name="Gloria", last_name="Globex", actor=CLI
    )
    people = [dict(DORA), *OTHERS]
    sync(engine, people)
    people[0] = {**DORA, "last_name": "Zweitname", "name": "Dora Zweitname"}
    sync(engine, people)
    people[0] = {**DORA, "last_name": "Drittname", "name": "Dora Drittname"}
    people[1] = {**OTHERS[0], "last_name": "Umbenannt", "name": "Emil Umbenannt"}
    sync(engine, people)
    erase(engine, "acme", "fritz@acme.example", actor=CLI)
    return employee_ids(engine)


def test_the_export_of_a_person_renamed_twice_holds_both_old_names_and_nobody_elses_data(
    engine: Engine, renamed_twice: dict[str, int]
) -> None:
    document = export_person(engine, "acme", "  DORA.example@ACME.example ", actor="dpo")  # compared normalized

    dora = renamed_twice["u-dora"]
    assert document["employee"]["id"] == dora
    assert (document["employee"]["last_name"], document["employee"]["source_user_id"]) == ("Drittname", "u-dora")
    assert document["group_memberships"] == [{"group_id": "g", "name": "Team G"}]
    renames = [(c["old_last_name"], c["new_last_name"]) for c in document["run_changes"] if c["action"] == "updated"]
    assert renames == [("Erstname", "Zweitname"), ("Zweitname", "Drittname")]  # both old names, old -> new
    assert [c["action"] for c in document["run_changes"]] == ["linked", "joined", "updated", "updated"]
    assert {c["employee_id"] for c in document["run_changes"]} == {dora}
    assert [(a["action"], a["new"]) for a in document["audit"]] == [("employee_created", {"employee": dora})]
    assert document["suppression"] is None
    # nobody else: no other person's names, addresses or ids, nor the other tenant's twin
    shown = json.dumps(document, ensure_ascii=False)
    for value in ["u-emil", "Emil", "Zweiter", "Umbenannt", "emil@", "u-fritz", "Fritz", "Dritter", "fritz@"]:
        assert value not in shown, value
    assert "Gloria" not in shown and "Globex" not in shown and "globex" not in shown  # the other tenant's twin


def test_an_export_names_no_other_employee_of_a_bulk_audit_entry(engine: Engine, renamed_twice: dict[str, int]) -> None:
    from store.access import audit

    dora, emil = renamed_twice["u-dora"], renamed_twice["u-emil"]
    audit(
        engine, tenant="acme", actor="cli", action="employees_deleted", old={"employees": [emil, dora], "status": "x"}
    )
    entries = export_person(engine, "acme", "dora.example@acme.example", actor="dpo")["audit"]
    assert entries[-1]["old"] == {"employees": [dora], "status": "x"}
    assert not any(emil in (e["old"] or {}).get("employees", []) for e in entries)


def test_an_email_with_a_nul_byte_is_nobody_the_store_holds_not_a_database_error(
    engine: Engine, renamed_twice: dict[str, int]
) -> None:
    # PostgreSQL refuses a NUL byte in a query (DataError, which the API answered with 500): no email holds one.
    with pytest.raises(UnknownPerson, match="holds nothing about anyone with that email"):
        export_person(engine, "acme", "dora.example\x00@acme.example", actor="dpo")


def test_an_unknown_email_is_one_sentence(engine: Engine, renamed_twice: dict[str, int]) -> None:
    with pytest.raises(UnknownPerson, match="holds nothing about anyone with that email"):
        export_person(engine, "acme", "fritz@acme.example", actor="dpo")  # erased: nothing left
    runner = CliRunner()
    done = runner.invoke(cli_app, ["export", "acme", "--email", "nobody@acme.example"])
    assert done.exit_code == 1 and done.output.count("\n") == 1 and "holds nothing" in done.output


def test_provision_export_writes_a_file_only_its_owner_reads(
    engine: Engine, renamed_twice: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "export.json"
    done = CliRunner().invoke(cli_app, ["export", "acme", "--email", "dora.example@acme.example", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "Drittname" not in done.output and "dora" not in done.output.lower()  # the terminal shows counts only
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["employee"]["last_name"] == "Drittname"


# ---- suppression after erasure ------------------------------------------------------------------------------

ERIKA = person("src-erika-41", "erika.erased@acme.example", "Erika", "Geloescht")
STAY = [person(f"u{i}", f"stay{i}@acme.example", "Stefan", f"Bleibt{i}") for i in range(4)]


def test_suppression_is_off_by_default_and_needs_the_secret(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    add_tenant(engine, "acme")
    assert privacy_settings(engine, "acme").suppress_erased is False
    monkeypatch.delenv("PROVISIONING_SUPPRESSION_SECRET", raising=False)
    with pytest.raises(SuppressionKeyError, match="PROVISIONING_SUPPRESSION_SECRET"):
        change_privacy(engine, "acme", actor=CLI, suppress_erased=True)
    assert privacy_settings(engine, "acme").suppress_erased is False


def test_suppression_holds_across_two_syncs_and_is_lifted(engine: Engine, secret: str) -> None:
    add_tenant(engine, "acme")
    change_privacy(engine, "acme", actor=CLI, suppress_erased=True)
    sync(engine, [*STAY, ERIKA])
    assert erase(engine, "acme", "Erika.Erased@acme.example", actor=CLI)["suppressed"] is True

    # why: the source still lists her in the selected group; first as she was, then under a new address (her
    # source id still known), then as a new account with her old address (her address still known)
    runs = [
        sync(engine, [*STAY, ERIKA]),
        sync(engine, [*STAY, {**ERIKA, "emails": [{"email": "erika.new@acme.example", "type": "WORK"}]}]),
        sync(engine, [*STAY, {**ERIKA, "id": "src-erika-rehired"}]),
    ]
    assert "src-erika-41" not in employee_ids(engine) and "src-erika-rehired" not in employee_ids(engine)
    with engine.connect() as conn:
        counts = [conn.execute(select(Run.counts).where(Run.id == run_id)).scalar_one() for run_id in runs]
    assert [(c["suppressed"], c["created"], c["invalid"], c["conflicts"]) for c in counts] == [(1, 0, 0, 0)] * 3
    recorded = json.dumps([changes_of(engine, run_id) for run_id in runs], default=str)
    assert "erika" not in recorded.lower() and "src-erika" not in recorded  # never named in the run history

    lift(engine, "acme", "ERIKA.erased@acme.example", actor=CLI)
    back = sync(engine, [*STAY, ERIKA])
    assert "src-erika-41" in employee_ids(engine)
    with engine.connect() as conn:
        after = conn.execute(select(Run.counts).where(Run.id == back)).scalar_one()
    assert (after["suppressed"], after["created"]) == (0, 1)
    with pytest.raises(StoreNotFound, match="suppresses nobody with that email"):
        lift(engine, "acme", "erika.erased@acme.example", actor=CLI)


def test_a_suppressed_person_is_not_named_in_the_log_lines_or_the_summary(engine: Engine, secret: str) -> None:
    add_tenant(engine, "acme")
    change_privacy(engine, "acme", actor=CLI, suppress_erased=True)
    sync(engine, [*STAY, ERIKA])
    erase(engine, "acme", "erika.erased@acme.example", actor=CLI)
    lines: list[str] = []
    snapshot = normalize([*STAY, ERIKA], [group("g", "Team G", [p["id"] for p in [*STAY, ERIKA]])])
    planned = plan_snapshot("acme", snapshot, IN_G, engine=engine, progress=Progress(log=lines.append))
    assert "filter: 4 users in scope, 0 outside the selected groups; 1 suppressed" in lines
    summary = summary_markdown(
        tenant="acme",
        outcome="succeeded",
        counts=planned.counts,
        quarantine=planned.quarantine,
        plan=planned.plan,
        missing_groups=[],
    )
    shown = "\n".join([*lines, summary, planned.plan.write_csv(), planned.memberships.write_csv()])
    assert "| suppressed | 1 |" in summary
    assert "erika" not in shown.lower() and "src-erika" not in shown


def test_a_run_refuses_a_suppression_list_it_cannot_read(
    engine: Engine, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_tenant(engine, "acme")
    change_privacy(engine, "acme", actor=CLI, suppress_erased=True)
    sync(engine, [*STAY, ERIKA])
    erase(engine, "acme", "erika.erased@acme.example", actor=CLI)
    # why: a changed or missing secret would silently bring every erased person back
    monkeypatch.setenv("PROVISIONING_SUPPRESSION_SECRET", "another-secret-of-this-deployment")
    with pytest.raises(SuppressionKeyError, match="another PROVISIONING_SUPPRESSION_SECRET"):
        sync(engine, [*STAY, ERIKA])
    monkeypatch.delenv("PROVISIONING_SUPPRESSION_SECRET")
    with pytest.raises(SuppressionKeyError):
        sync(engine, [*STAY, ERIKA])
    assert "src-erika-41" not in employee_ids(engine)
    # turned off, the list is kept but not applied: the next sync brings her back
    change_privacy(engine, "acme", actor=CLI, suppress_erased=False)
    sync(engine, [*STAY, ERIKA])
    assert "src-erika-41" in employee_ids(engine)


def test_an_erasure_refused_for_want_of_the_secret_erases_nothing(
    engine: Engine, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_tenant(engine, "acme")
    change_privacy(engine, "acme", actor=CLI, suppress_erased=True)
    sync(engine, [*STAY, ERIKA])
    monkeypatch.delenv("PROVISIONING_SUPPRESSION_SECRET")
    with pytest.raises(SuppressionKeyError):
        erase(engine, "acme", "erika.erased@acme.example", actor=CLI)
    assert "src-erika-41" in employee_ids(engine)


def test_the_suppression_list_holds_no_email_or_id_and_is_per_tenant(engine: Engine, secret: str) -> None:
    for tenant in ("acme", "globex"):
        add_tenant(engine, tenant)
        change_privacy(engine, tenant, actor=CLI, suppress_erased=True)
        sync(engine, [*STAY, ERIKA], tenant=tenant)
        erase(engine, tenant, "erika.erased@acme.example", actor=CLI)
    from store.models import Suppression

    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(Suppression.__table__))]
    assert len(rows) == 2 and rows[0]["email_digest"] != rows[1]["email_digest"]  # unlinkable across tenants
    assert "erika" not in json.dumps(rows, default=str).lower()
    export = export_person(engine, "acme", "erika.erased@acme.example", actor="dpo")
    assert export["employee"] is None and export["suppression"] is not None


# ---- retention ----------------------------------------------------------------------------------------------


def age(engine: Engine, run_id: str, days: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(started_at=utcnow() - timedelta(days=days)))


@pytest.fixture
def history(engine: Engine) -> dict[str, list[str]]:
    """acme and globex, each with a run 100 days old (everyone created) and one 10 days old (renames)."""
    runs: dict[str, list[str]] = {}
    for tenant in ("acme", "globex"):
        add_tenant(engine, tenant)
        people = [person(f"u{i}", f"p{i}@{tenant}.example", "Alt", f"Name{i}") for i in range(7)]
        old = sync(engine, people, tenant=tenant)
        people = [{**p, "last_name": "Neu", "name": "Alt Neu"} for p in people]
        recent = sync(engine, people, tenant=tenant)
        age(engine, old, 100)
        age(engine, recent, 10)
        runs[tenant] = [old, recent]
    return runs


def test_retention_scrubs_only_what_is_older_than_the_period_and_nothing_of_another_tenant(
    engine: Engine, history: dict[str, list[str]]
) -> None:
    old, recent = history["acme"]
    before = {run_id: changes_of(engine, run_id) for ids in history.values() for run_id in ids}
    with engine.connect() as conn:
        counts_before = dict(conn.execute(select(Run.id, Run.counts)).all())

    seen: list[int] = []
    done = scrub_expired(engine, "acme", batch_rows=3, on_batch=lambda batch, rows, _s: seen.append(batch.rows))

    # every row of the old run that named someone lost names and emails, and only those fields
    scrubbed = changes_of(engine, old)
    named = [r for r in before[old] if any(r[c] is not None for c in PERSONAL)]
    assert done.rows == len(named) == 7 and done.runs == 1
    assert max(seen) <= 3 and sum(seen) == len(before[old]) and done.batches == len(seen)  # bounded batches
    for was, now in zip(before[old], scrubbed, strict=True):
        assert all(now[c] is None for c in PERSONAL)
        assert {k: v for k, v in now.items() if k not in PERSONAL} == {
            k: v for k, v in was.items() if k not in PERSONAL
        }
    # what is younger than the period, and the other tenant, are as they were; so are the counts
    assert changes_of(engine, recent) == before[recent]
    for run_id in history["globex"]:
        assert changes_of(engine, run_id) == before[run_id]
    with engine.connect() as conn:
        assert dict(conn.execute(select(Run.id, Run.counts)).all()) == counts_before
        marked = dict(conn.execute(select(Run.id, Run.scrubbed_at)).all())
    assert marked[old] is not None and marked[recent] is None

    again = scrub_expired(engine, "acme")  # the next day: nothing left to do
    assert (again.runs, again.rows, again.batches) == (0, 0, 0)


def test_a_dry_run_counts_and_writes_nothing_and_the_period_is_per_tenant(
    engine: Engine, history: dict[str, list[str]]
) -> None:
    change_privacy(engine, "globex", actor=CLI, retention_days=120)  # its old run is not due yet
    before = {run_id: changes_of(engine, run_id) for ids in history.values() for run_id in ids}
    assert scrub_expired(engine, "acme", dry_run=True).rows == 7
    assert {run_id: changes_of(engine, run_id) for run_id in before} == before
    assert scrub_expired(engine, "globex").rows == 0
    change_privacy(engine, "globex", actor=CLI, retention_days=5)  # now both of its runs are
    assert scrub_expired(engine, "globex").rows == 14


def test_batches_put_small_runs_together_and_cut_large_ones_by_seq_range() -> None:
    planned = batches([("a", 2), ("b", 3), ("c", 7), ("d", 0), ("e", 4)], batch_rows=5)
    assert [(b.run_ids, b.seqs, b.rows, b.finishes) for b in planned] == [
        (("a", "b"), None, 5, ("a", "b")),
        (("c",), (1, 5), 5, ()),
        (("c",), (6, 7), 2, ("c",)),
        (("d", "e"), None, 4, ("d", "e")),
    ]
    assert all(b.rows <= 5 for b in batches([(str(i), i % 13) for i in range(200)], batch_rows=5))


# ---- offboarding ----------------------------------------------------------------------------------------------


def rows_naming(engine: Engine, tenant: str) -> dict[str, int]:
    """Per table (every table of the models), the rows with any value that is the tenant's id, JSON included."""
    found: dict[str, int] = {}
    quoted = json.dumps(tenant)
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            hits = [
                row
                for row in conn.execute(select(table))
                if any(v == tenant or (isinstance(v, dict | list) and quoted in json.dumps(v)) for v in row)
            ]
            if hits:
                found[table.name] = len(hits)
    return found


def everything_else(engine: Engine, tenant: str) -> dict[str, list[str]]:
    """Every row of every table that does not name the tenant (the audit entry of a deletion left out)."""
    quoted = json.dumps(tenant)
    state: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = [json.dumps(dict(r._mapping), default=str, sort_keys=True) for r in conn.execute(select(table))]
            state[table.name] = sorted(r for r in rows if quoted not in r and '"action": "tenant_deleted"' not in r)
    return state


@pytest.fixture
def two_customers(engine: Engine, upstream: Upstream, secret: str) -> Upstream:
    """acme and globex, each connected (a connection of its own at the simulator), synced, with keys, audit
    entries, a connect state, a suppressed person and (SQLite) a stale lock row: a row in every table."""
    people = [*STAY, ERIKA]
    for tenant in ("acme", "globex"):
        setup_tenant(engine, upstream, ["g"], tenant=tenant)
        create_key(engine, f"{tenant}-page", tenant)
        change_privacy(engine, tenant, actor=CLI, suppress_erased=True)
        create_employee(engine, tenant, email=f"hand@{tenant}.example", first_name="Hand", last_name="Made", actor=CLI)
        sync(engine, people, tenant=tenant)
        erase(engine, tenant, "erika.erased@acme.example", actor=CLI)
        with engine.begin() as conn:
            conn.execute(
                insert(ConnectState).values(
                    nonce=f"nonce-{tenant}", tenant_id=tenant, provider="entra", expires_at=utcnow()
                )
            )
            if engine.dialect.name == "sqlite":  # a lease nobody renewed: a crashed run's
                stale = utcnow() - timedelta(hours=1)
                conn.execute(
                    insert(TenantLock).values(tenant_id=tenant, owner="crashed", acquired_at=stale, expires_at=stale)
                )
    create_key(engine, "platform", None)
    return upstream


def test_after_tenant_delete_no_row_of_any_table_names_the_tenant_and_another_is_untouched(
    engine: Engine, two_customers: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # why: no Prefect server here (another test of this process may have started one); Prefect's part is below
    monkeypatch.setattr("admin.privacy.prefect_server_configured", lambda: False)
    named = rows_naming(engine, "acme")
    expected = {t.name for t in Base.metadata.sorted_tables} - (
        {"tenant_locks"} if engine.dialect.name == "postgresql" else set()  # Postgres locks hold no rows
    )
    assert set(named) == expected  # not vacuous: before, every table names acme
    others = everything_else(engine, "acme")

    preview = delete_tenant(engine, "acme", dry_run=True, actor="platform")
    assert everything_else(engine, "acme") == others  # nothing removed (but the stale lock a dry run takes over)
    assert {k: v for k, v in rows_naming(engine, "acme").items() if k != "tenant_locks"} == {
        k: v for k, v in named.items() if k != "tenant_locks"
    }
    done = delete_tenant(engine, "acme", dry_run=False, actor="platform")

    assert rows_naming(engine, "acme") == {}
    assert everything_else(engine, "acme") == others  # globex, the all-tenants key, their audit: as they were
    assert done.rows == preview.rows and done.rows["employees"] == 5 and done.rows["tenants"] == 1
    assert done.rows["tenant_locks"] == 0  # the stale lock was taken over by the deletion and released
    assert done.unified_connection == "conn-1" and done.unified_known
    simulator = two_customers.app.state.simulator  # type: ignore[union-attr]
    assert "conn-1" in simulator.deleted_connections and "conn-globex" in simulator.connections
    assert done.prefect is None and "PREFECT_API_URL" in done.notes[0]
    assert tenant_rows(engine, "globex")["employees"] == 5


def test_tenant_delete_is_refused_while_a_run_of_the_tenant_is_in_progress(
    engine: Engine, two_customers: Upstream
) -> None:
    url = str(engine.url.render_as_string(hide_password=False))
    with tenant_lock(engine, "acme") as owner:
        held = db_state(url)
        with pytest.raises(TenantBusyError, match="already being synced"):
            delete_tenant(engine, "acme", dry_run=False, actor="platform")
        assert db_state(url) == held
    assert owner
    queued = queue_sync(engine, "acme", dry_run=False, override_guard=False, actor="platform")
    before = db_state(url)
    with pytest.raises(TenantBusy, match=queued):  # a run a door queued, not started yet
        delete_tenant(engine, "acme", dry_run=False, actor="platform")
    assert db_state(url) == before


def test_provision_tenant_delete_needs_yes_off_a_terminal(engine: Engine, two_customers: Upstream) -> None:
    runner = CliRunner()
    refused = runner.invoke(cli_app, ["tenant", "delete", "acme"])
    assert refused.exit_code == 1 and "needs --yes" in refused.output
    dry = runner.invoke(cli_app, ["tenant", "delete", "acme", "--dry-run"])
    assert dry.exit_code == 0 and "would remove" in dry.output and re.search(r"employees +5 rows", dry.output)
    assert rows_naming(engine, "acme")
    done = runner.invoke(cli_app, ["tenant", "delete", "acme", "--yes", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["rows"]["employees"] == 5
    assert rows_naming(engine, "acme") == {}


# ---- the admin API --------------------------------------------------------------------------------------------


@pytest.fixture
def api(engine: Engine, two_customers: Upstream) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    class NoRuns:
        def start(self, tenant: str, run_id: str, *, dry_run: bool, override_guard: bool) -> None:
            raise AssertionError("no run is started here")

    keys = {"acme": create_key(engine, "acme-api", "acme"), "platform": create_key(engine, "platform-api", None)}
    service = create_app(engine=engine, dispatcher=NoRuns(), settings=Settings(database_url=None))
    with httpx.Client(transport=SyncASGITransport(service), base_url="http://api") as client:
        yield client, keys


def test_the_api_exports_lifts_and_deletes_a_tenant_for_all_tenants_keys_only(
    api: tuple[httpx.Client, dict[str, str]], engine: Engine
) -> None:
    client, keys = api
    acme = {"Authorization": f"Bearer {keys['acme']}"}
    platform = {"Authorization": f"Bearer {keys['platform']}"}
    exported = client.post("/tenants/acme/exports", json={"email": "stay1@acme.example"}, headers=acme)
    assert exported.status_code == 200, exported.text
    assert exported.json()["employee"]["last_name"] == "Bleibt1"
    unknown = client.post("/tenants/acme/exports", json={"email": "nobody@acme.example"}, headers=acme)
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    settings = client.put("/tenants/acme/settings", json={"retention_days": 30}, headers=acme)
    assert settings.status_code == 200 and settings.json()["retention_days"] == 30
    assert settings.json()["suppress_erased"] is True

    lifted = client.post("/tenants/acme/suppressions/lift", json={"email": "erika.erased@acme.example"}, headers=acme)
    assert lifted.status_code == 204
    assert privacy_settings(engine, "acme").suppressed == 0

    own = client.delete("/tenants/acme?confirm=acme", headers=acme)
    assert own.status_code == 403 and own.json()["detail"] == "Only an all-tenants key can delete a tenant."
    unconfirmed = client.delete("/tenants/acme", headers=platform)
    assert unconfirmed.status_code == 422 and "confirm=acme" in unconfirmed.json()["detail"]
    dry = client.delete("/tenants/acme?dry_run=true", headers=platform)
    assert dry.status_code == 200 and dry.json()["rows"]["employees"] == 5 and rows_naming(engine, "acme")
    gone = client.delete("/tenants/acme?confirm=acme", headers=platform)
    assert gone.status_code == 200 and gone.json()["unified_connection"] == "conn-1"
    assert rows_naming(engine, "acme") == {}
    assert client.get("/tenants/acme", headers=platform).status_code == 404


# ---- through the Prefect flows --------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_api")
def test_a_flow_run_leaves_a_suppressed_person_out_and_its_artifacts_do_not_name_them(
    engine: Engine, upstream: Upstream, secret: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from tests.upstreams import sync as flow_sync
    from tests.wire import dataset

    people = [*STAY, ERIKA]
    upstream.source.replace(dataset(people, [group("g", "Team G", [p["id"] for p in people])]))
    setup_tenant(engine, upstream, ["g"], tenant="umbrella")
    change_privacy(engine, "umbrella", actor=CLI, suppress_erased=True)
    assert flow_sync("umbrella")["counts"]["created"] == 5
    erase(engine, "umbrella", "erika.erased@acme.example", actor=CLI)
    second = flow_sync("umbrella")
    assert (second["counts"]["suppressed"], second["counts"]["created"]) == (1, 0)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sync-umbrella", "sync-umbrella-summary"]))
        )
    assert artifacts and not any("erika" in json.dumps(a.data, default=str).lower() for a in artifacts)


@pytest.mark.usefixtures("prefect_api")
def test_the_retention_flow_reports_rows_per_tenant_and_tenant_delete_clears_prefect(
    engine: Engine, upstream: Upstream
) -> None:
    from deployments.reconcile import forget_tenant, reconcile
    from domain.schedules import Schedule
    from flows.retention import retention
    from store.schedules import set_schedule
    from tests.upstreams import sync as flow_sync
    from tests.wire import dataset

    people = [person(f"r{i}", f"r{i}@initech.example", "Ralf", f"Rest{i}") for i in range(3)]
    upstream.source.replace(dataset(people, [group("g", "Team G", [p["id"] for p in people])]))
    setup_tenant(engine, upstream, ["g"], tenant="initech")
    run_id = flow_sync("initech")["run_id"]
    age(engine, run_id, 91)
    assert retention(tenants=["initech"], dry_run=True)["initech"]["rows"] == 3
    assert retention(tenants=["initech"])["initech"]["rows"] == 3
    assert all(r["old_email"] is None and r["new_email"] is None for r in changes_of(engine, run_id))

    set_schedule(engine, "initech", Schedule(interval_seconds=86400))
    assert reconcile(engine, only_tenants=["initech"]).created == ["sync-tenant-initech"]
    done = delete_tenant(engine, "initech", dry_run=False, actor="platform")
    assert done.prefect is not None and done.prefect["deployments"] == ["sync-tenant-initech"]
    assert done.prefect["flow_runs"] >= 1 and done.prefect["artifacts"] >= 2
    assert forget_tenant("initech", dry_run=True).as_dict() == {"deployments": [], "flow_runs": 0, "artifacts": 0}


# ---- the commands as an operator runs them --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # once: the commands' rules run on both above
def test_the_data_protection_commands_through_the_real_process(
    engine: Engine, database_url: str, two_customers: Upstream, tmp_path: Path
) -> None:
    env = clean_env(tmp_path) | {
        "PROVISIONING_DATABASE_URL": database_url,
        "PROVISIONING_SUPPRESSION_SECRET": SECRET,
        "UNIFIED_API_TOKEN": TOKEN,
    }

    def provision(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = run_provision(*args, env=env, timeout=timeout, input_text="")  # stdin is no terminal
        assert "Traceback" not in done.stderr, done.stderr
        return done

    out = tmp_path / "export.json"
    exported = provision("export", "acme", "--email", "stay2@acme.example", "--out", str(out))
    assert exported.returncode == 0 and json.loads(out.read_text())["employee"]["last_name"] == "Bleibt2"
    unknown = provision("export", "acme", "--email", "nobody@acme.example")
    assert unknown.returncode == 1 and unknown.stderr.startswith("Error: ") and unknown.stderr.count("\n") == 1
    assert "on: erased people" in provision("suppression", "acme").stdout
    erased = provision("erase", "acme", "--email", "stay3@acme.example", "--yes")
    assert erased.returncode == 0 and "neither create nor link" in erased.stdout
    assert provision("erase", "acme", "--email", "stay3@acme.example", "--lift").returncode == 0
    assert "30 days" in provision("retention", "period", "acme", "--days", "30").stdout
    ran = provision("retention", "run", "--tenant", "acme", "--dry-run", "--json", timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["acme"]["rows"] == 0  # nothing is 30 days old yet
    refused = provision("tenant", "delete", "acme")
    assert refused.returncode == 1 and "needs --yes" in refused.stderr
    deleted = provision("tenant", "delete", "acme", "--yes")
    assert deleted.returncode == 0 and re.search(r"employees +4 rows", deleted.stdout)
    assert "PREFECT_API_URL" in deleted.stdout
    assert rows_naming(engine, "acme") == {}
