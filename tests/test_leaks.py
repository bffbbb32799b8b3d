"""No leaks: a sync's token appears nowhere, and no employee email reaches logs, artifacts, run rows,
exception messages or Prefect's result storage, for a run that succeeds and for runs that fail in
the extract and in the load (where the database's own message quotes the offending email)."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

import tasks.load
from simulator import Fault
from store.models import Run, RunChange
from store.repo import add_employee
from tests.upstreams import TOKEN, Upstream, in_one_group, setup_tenant, sync
from tests.wire import person

pytestmark = pytest.mark.usefixtures("prefect_api")


def prefect_texts(flow_run_ids: list[str]) -> list[str]:
    """Every log line Prefect recorded for these flow runs, and every artifact it holds."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)))
        artifacts = client.read_artifacts()
    assert logs, "Prefect recorded no logs: the test would prove nothing"
    return [log.message for log in logs] + [f"{a.key} {a.description} {a.data}" for a in artifacts]


def stored_files(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


def test_token_and_emails_never_leave_the_employee_database(
    engine: Engine,
    upstream: Upstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, PREFECT_RESULTS_PERSIST_BY_DEFAULT, temporary_settings

    caplog.set_level(logging.DEBUG)
    staff = [person(f"u{i}", f"leak.check{i}@acme.example", "Vorname", f"Nachname{i}") for i in range(12)]
    emails = [p["emails"][0]["email"] for p in staff]
    upstream.source.replace(in_one_group(staff[:10]))
    setup_tenant(engine, upstream, ["g"])
    storage = tmp_path / "prefect-storage"
    failures: list[BaseException] = []

    # why: persist everything that is not explicitly opted out, so an opt-out that is missing shows up
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage, PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}):
        sync()  # 1. succeeds: 10 created

        # 2. fails in the load: an employee appears behind the plan's back with a new hire's email
        upstream.source.replace(in_one_group(staff))
        real = tasks.load.apply_plan

        def late_comer_then_load(*args: Any, **kwargs: Any) -> int:
            add_employee(engine, "acme", email=emails[10].upper(), first_name="Late", last_name="Comer")
            return real(*args, **kwargs)

        monkeypatch.setattr(tasks.load, "apply_plan", late_comer_then_load)
        with pytest.raises(Exception) as load_failure:
            sync()
        failures.append(load_failure.value)
        monkeypatch.setattr(tasks.load, "apply_plan", real)

        # 3. fails in the extract: the source refuses the token
        upstream.faults.add(Fault(status=401))
        with pytest.raises(Exception) as auth_failure:
            sync()
        failures.append(auth_failure.value)

    assert "rolled back" in str(failures[0]) and "401" in str(failures[1])
    with engine.connect() as conn:
        runs = [dict(r._mapping) for r in conn.execute(select(Run))]
        assert conn.execute(select(RunChange)).first() is not None  # personal data lives here, and only here
    assert [r["outcome"] for r in sorted(runs, key=lambda r: r["started_at"])] == ["succeeded", "failed", "failed"]

    texts = [
        caplog.text,
        *(r.getMessage() for r in caplog.records),
        *(str(e) + repr(e) + "".join(traceback.format_exception(e)) for e in failures),
        *(str(r) for r in runs),
        *prefect_texts([r["flow_run_id"] for r in runs]),
    ]
    files = stored_files(storage)
    assert files, "nothing was persisted: the storage check would prove nothing"
    for text in texts:
        assert TOKEN not in text
        for email in emails:
            assert email.lower() not in text.lower()
    for blob in files:
        assert TOKEN.encode() not in blob
        for email in emails:
            assert email.encode() not in blob and email.upper().encode() not in blob
