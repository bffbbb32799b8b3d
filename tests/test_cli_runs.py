"""The operator's CLI where a run's truth is at stake, through the real `provision` process: Ctrl-C during a
sync, a report that fails after the load committed, reconnecting to another source, and a provider switched
under an active connection. Each checks the exit code, what stderr says, and the database afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from simulator.faults import Fault
from store.db import make_engine
from store.models import Employee, Integration, Run
from tests.processes import clean_env, provision_command, run_provision
from tests.upstreams import CONNECTION, TOKEN, Gate, Upstream, in_one_group, serving, setup_tenant, staff
from tests.wire import dataset, group

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def sqlite_engine(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("PROVISIONING_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def process_env(home: Path, database_url: str) -> dict[str, str]:
    """The operator's environment: the test's database, the simulator's token, the harness's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    return {
        **clean_env(home),
        "PROVISIONING_DATABASE_URL": database_url,
        "UNIFIED_API_TOKEN": TOKEN,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# ---- Ctrl-C and the run row ---------------------------------------------------------------------------


def test_ctrl_c_during_a_sync_ends_it_at_once_with_one_line_and_a_run_row_that_says_nothing_was_written(
    sqlite_url: str, sqlite_engine: Engine, tmp_path: Path
) -> None:
    gate = Gate()  # holds the first employee request, so the interrupt lands in the extract
    with serving(in_one_group(staff(5)), wrap=gate.around) as upstream:
        setup_tenant(sqlite_engine, upstream, ["g"])
        with (tmp_path / "err").open("w") as err:
            sync = subprocess.Popen(
                [str(provision_command()), "sync", "acme"],
                env=process_env(tmp_path, sqlite_url),
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # its own process group, as a terminal's foreground job has
            )
        try:
            assert gate.entered.wait(120), (tmp_path / "err").read_text()
            os.killpg(sync.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground job
            returncode = sync.wait(60)
        finally:
            gate.open.set()
            if sync.poll() is None:
                sync.kill()
    stderr = (tmp_path / "err").read_text()
    assert returncode == 130, stderr
    run = sqlite_engine.connect().execute(select(Run)).one()
    assert (run.outcome, run.failed_stage) == ("failed", "extract")
    assert run.error == "Interrupted during extract: nothing was written to the employee table."
    assert stderr.splitlines()[-1] == f"Interrupted: run {run.id} failed; {run.error}"
    assert "Traceback" not in stderr and len(stderr.splitlines()) < 20
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Employee)).scalar() == 0


@pytest.mark.parametrize("failure", [httpx.ConnectError("the orchestrator is gone"), KeyboardInterrupt()])
def test_a_report_that_fails_after_the_load_committed_leaves_the_run_succeeded_with_a_note(
    sqlite_engine: Engine, upstream: Upstream, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    import flows.sync_tenant
    from flows.sync_tenant import sync_tenant

    def report_fails(*_args: Any, **_kwargs: Any) -> None:
        raise failure

    upstream.source.replace(in_one_group(staff(3)))
    setup_tenant(sqlite_engine, upstream, ["g"])
    monkeypatch.setattr(flows.sync_tenant, "report_task", report_fails)
    if isinstance(failure, Exception):
        assert sync_tenant("acme", trigger="cli")["outcome"] == "succeeded"  # the flow reports what the table holds
    else:
        with pytest.raises(KeyboardInterrupt):
            sync_tenant("acme", trigger="cli")
    with sqlite_engine.connect() as conn:
        run = conn.execute(select(Run)).one()
        assert conn.execute(select(func.count()).select_from(Employee)).scalar() == 3
    assert (run.outcome, run.failed_stage, run.counts["created"]) == ("succeeded", None, 3)
    assert run.error.startswith("The load committed; reporting the run then failed: ")


# ---- connecting again ---------------------------------------------------------------------------------


def selection(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as conn:
        row = conn.execute(
            select(Integration.connection_id, Integration.selected_group_ids, Integration.provider)
        ).one()
    return tuple(row)


def test_reconnecting_to_another_source_clears_a_selection_whose_groups_it_lacks_and_says_so(
    sqlite_url: str, sqlite_engine: Engine, upstream: Upstream, tmp_path: Path
) -> None:
    env = process_env(tmp_path, sqlite_url)
    upstream.source.replace(in_one_group(staff(3), "g-old"))
    setup_tenant(sqlite_engine, upstream, ["g-old"])
    assert run_provision("disconnect", "acme", env=env).returncode == 0

    upstream.app.state.simulator.add_connection(id="conn-new")  # a new sign-in, to a source with other groups
    upstream.source.replace(dataset(staff(3), [group("g-new", "New", ["u0", "u1", "u2"])]))
    done = run_provision(
        "connect", "acme", "--provider", "entra", "--connection-id", "conn-new", "--base-url", upstream.url, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "The group selection of the previous connection was cleared" in done.stdout
    assert selection(sqlite_engine) == ("conn-new", [], "entra")
    dry = run_provision("sync", "acme", "--dry-run", env=env)
    assert dry.returncode == 1 and "groups" in one_error_line(dry.stderr)  # no sync flags everyone meanwhile

    # Back to a source that has the selected group: the selection stays, and nothing is said.
    run_provision("filter", "acme", "--group", "g-new", env=env)
    assert run_provision("disconnect", "acme", env=env).returncode == 0
    upstream.app.state.simulator.add_connection(id="conn-third")
    again = run_provision(
        "connect", "acme", "--provider", "entra", "--connection-id", "conn-third", "--base-url", upstream.url, env=env
    )
    assert again.returncode == 0 and "cleared" not in again.stdout
    assert selection(sqlite_engine) == ("conn-third", ["g-new"], "entra")


def test_connecting_an_active_connection_as_another_provider_is_refused_and_changes_nothing(
    sqlite_url: str, sqlite_engine: Engine, upstream: Upstream, tmp_path: Path
) -> None:
    env = process_env(tmp_path, sqlite_url)
    setup_tenant(sqlite_engine, upstream, ["g"])
    switched = run_provision(
        "connect", "acme", "--provider", "google", "--connection-id", CONNECTION, "--base-url", upstream.url,
        "--no-check", env=env,
    )  # fmt: skip
    assert switched.returncode == 1
    assert "is connected to entra" in one_error_line(switched.stderr) and "disconnect it first" in switched.stderr
    assert selection(sqlite_engine) == (CONNECTION, ["g"], "entra")


# ---- one sentence, quiet by default, JSON when asked -----------------------------------------------------


def test_a_failed_sync_prints_its_sentence_last_without_a_traceback_and_json_names_the_run(
    sqlite_url: str, sqlite_engine: Engine, upstream: Upstream, tmp_path: Path
) -> None:
    env = process_env(tmp_path, sqlite_url)
    setup_tenant(sqlite_engine, upstream, ["g"])
    upstream.faults.add(Fault(status=401, kind="employee", sticky=True))  # a revoked token: explained at once
    failed = run_provision("sync", "acme", "--json", env=env)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr and len(failed.stderr.splitlines()) <= 5, failed.stderr
    sentence = failed.stderr.splitlines()[-1]
    assert sentence.startswith("Error: ") and "401" in sentence
    answer = json.loads(failed.stdout)  # stdout is JSON, error or not
    with sqlite_engine.connect() as conn:
        run = conn.execute(select(Run)).one()
    assert answer == {"error": sentence.removeprefix("Error: "), "run_id": run.id, "outcome": "failed"}


def test_a_successful_sync_prints_its_counts_and_no_prefect_lines_unless_verbose(
    sqlite_url: str, sqlite_engine: Engine, upstream: Upstream, tmp_path: Path
) -> None:
    env = process_env(tmp_path, sqlite_url)
    upstream.source.replace(in_one_group(staff(2)))
    setup_tenant(sqlite_engine, upstream, ["g"])
    quiet = run_provision("sync", "acme", env=env)
    assert quiet.returncode == 0 and "created           2" in quiet.stdout
    assert " | INFO " not in quiet.stderr, quiet.stderr
    verbose = run_provision("sync", "acme", "--verbose", env=env)
    assert verbose.returncode == 0 and "Flow run 'sync-acme'" in verbose.stderr


def test_a_busy_tenant_refuses_a_second_sync_or_with_wait_waits_for_the_first(
    sqlite_url: str, sqlite_engine: Engine, upstream: Upstream, tmp_path: Path
) -> None:
    from store.locks import tenant_lock

    env = process_env(tmp_path, sqlite_url)
    upstream.source.replace(in_one_group(staff(2)))
    setup_tenant(sqlite_engine, upstream, ["g"])
    with tenant_lock(sqlite_engine, "acme"):  # another run holds the tenant
        refused = run_provision("sync", "acme", env=env)
        assert refused.returncode == 1 and "`provision sync --wait`" in refused.stderr.splitlines()[-1]
        assert "Traceback" not in refused.stderr
        waiting = subprocess.Popen(
            [str(provision_command()), "sync", "acme", "--wait"], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # until its run is waiting for the lock
                with sqlite_engine.connect() as conn:
                    outcomes = [r.outcome for r in conn.execute(select(Run.outcome).order_by(Run.started_at))]
                if outcomes[1:] == ["queued"]:  # queued: it waits for the lock (store/repo.py abandon_stale_runs)
                    break
                time.sleep(0.2)
            assert waiting.poll() is None, "the waiting sync ended while the tenant was busy"
        except BaseException:
            waiting.kill()
            raise
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and "succeeded" in out
    with sqlite_engine.connect() as conn:
        assert [r.outcome for r in conn.execute(select(Run.outcome).order_by(Run.started_at))] == [
            "refused",
            "succeeded",
        ]


def test_sync_all_with_an_unknown_tenant_is_refused_before_any_run(sqlite_url: str, tmp_path: Path) -> None:
    env = process_env(tmp_path, sqlite_url)
    assert run_provision("tenant", "add", "acme", env=env).returncode == 0
    refused = run_provision("sync-all", "--tenant", "acme", "--tenant", "nosuch", env=env)
    assert refused.returncode == 1
    assert one_error_line(refused.stderr) == (
        "Error: Unknown tenant 'nosuch'; create it with `provision tenant add nosuch`."
    )
    with make_engine(sqlite_url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar() == 0


def test_a_schedule_saved_while_prefect_is_unreachable_says_what_was_saved_and_how_to_apply_it(
    sqlite_url: str, sqlite_engine: Engine, upstream: Upstream, tmp_path: Path
) -> None:
    env = {**process_env(tmp_path, sqlite_url), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    setup_tenant(sqlite_engine, upstream, ["g"])
    done = run_provision("schedule", "acme", "--every", "24h", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    sentence = one_error_line(done.stderr)
    assert "The schedule is saved" in sentence and "`provision deploy` applies it" in sentence
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(Integration.schedule_interval_seconds)).scalar() == 86400


def test_an_unexpected_failure_points_at_the_flow_runs_log_not_a_worker() -> None:
    from domain.errors import describe

    said = describe(RuntimeError("boom"))
    assert said.startswith("unexpected RuntimeError") and "flow run's log" in said and "worker" not in said
