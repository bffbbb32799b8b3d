"""The one assembly of the stages: their order, which stage a failure is blamed on, what a failed run
says it did not do, and the one line of figures each stage logs (no personal data).

The flow tests feed the flow a source snapshot in place of the extract task, so they need no upstream.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, select

import flows.sync_tenant
import pipeline.run
from pipeline import PLAIN, STAGES, Progress, Selection, plan_snapshot
from sources.normalize import normalize
from store.models import Run
from store.repo import add_employee, add_tenant, connect, replace_groups, select_groups
from tasks.validate import InvalidPlanError
from tests.runs import against
from tests.wire import group, person

STAFF = [person(f"u{i}", f"staff.member{i}@acme.example", "Vorname", f"Nachname{i}") for i in range(5)]
SNAPSHOT = normalize(STAFF, [group("g", "Alle", [p["id"] for p in STAFF])])


def _no_employees() -> pl.DataFrame:
    from schemas.employees import EMPLOYEE_SCHEMA

    return pl.DataFrame(schema=EMPLOYEE_SCHEMA)


def test_the_stages_run_in_the_order_of_the_design() -> None:
    called: list[str] = []
    base = against(_no_employees())

    def spy(name: str, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            called.append(name)
            return fn(*args, **kwargs)

        return wrapped

    stages = replace(
        base,
        flatten=spy("flatten", base.flatten),
        filter=spy("filter", base.filter),
        validate_users=spy("validate users", base.validate_users),
        match=spy("match", base.match),
        validate_plan=spy("validate plan", base.validate_plan),
    )
    progress = Progress(log=lambda _line: None)
    planned = plan_snapshot("acme", SNAPSHOT, Selection(group_ids=("g",)), stages=stages, progress=progress)
    assert called == ["flatten", "filter", "validate users", "match", "validate plan"]
    assert progress.done == called  # no engine: the group list is not stored
    assert planned.counts["created"] == 5 and planned.stop_reason is None


def test_a_failure_is_blamed_on_the_stage_that_raised_and_later_stages_are_not_done() -> None:
    def broken_match(*_args: Any) -> pl.DataFrame:
        raise RuntimeError("boom")

    progress = Progress(log=lambda _line: None)
    with pytest.raises(RuntimeError):
        plan_snapshot(
            "acme", SNAPSHOT, Selection(all_users=True), stages=replace(PLAIN, match=broken_match), progress=progress
        )
    assert progress.failed_stage == "match"
    assert progress.not_done == ["validate plan", "load", "report"]
    assert progress.done == ["flatten", "filter", "validate users"]


def test_every_stage_logs_one_line_of_figures() -> None:
    lines: list[str] = []
    plan_snapshot(
        "acme",
        SNAPSHOT,
        Selection(group_ids=("g",)),
        stages=against(_no_employees()),
        progress=Progress(log=lines.append),
    )
    assert lines == [
        "flatten: 1 groups, 5 memberships including inherited ones",
        "filter: 5 users in scope, 0 outside the selected groups",
        "validate users: 5 usable, 0 quarantined",
        "match: planned created 5; 5 group memberships joined, 0 left",
        "validate plan: plan valid; guard passed",
    ]


# ---- the flow: the run row and the summary say where it failed -------------------------------------


@pytest.fixture
def tenant(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    add_tenant(engine, "acme")
    add_employee(engine, "acme", email="staff.member0@acme.example", first_name="Vorname", last_name="Nachname0")
    # never contacted: the extract is replaced by a snapshot
    connect(engine, "acme", provider="entra", connection_id="conn-1", base_url="http://127.0.0.1:9")
    replace_groups(
        engine, "acme", pl.DataFrame({"group_id": ["g"], "name": ["Alle"], "parent_id": [None], "member_count": [5]})
    )
    select_groups(engine, "acme", ["g"], all_users=False)
    tasks = replace(flows.sync_tenant.TASKS, extract=lambda _config: SNAPSHOT)
    monkeypatch.setattr(flows.sync_tenant, "TASKS", tasks)
    return "acme"


def last_run(engine: Engine) -> Run:
    with engine.connect() as conn:
        return conn.execute(select(Run).order_by(Run.started_at.desc())).first()  # type: ignore[return-value]


def summary_markdown_of(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    published: list[str] = []
    real = flows.sync_tenant.publish

    def keep(tenant: str, counts: dict[str, int], markdown: str) -> None:
        published.append(markdown)
        real(tenant, counts, markdown)

    monkeypatch.setattr(flows.sync_tenant, "publish", keep)
    return published


@pytest.mark.usefixtures("prefect_api")
def test_a_failure_storing_the_group_list_is_blamed_on_the_groups_stage(
    engine: Engine, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pipeline.run, "replace_groups", refuse)
    published = summary_markdown_of(monkeypatch)
    with pytest.raises(OSError):
        flows.sync_tenant.sync_tenant(tenant)
    run = last_run(engine)
    assert (run.outcome, run.failed_stage) == ("failed", "groups")
    assert "Not done: filter, validate users, match, validate plan, load, report." in published[-1]


@pytest.mark.usefixtures("prefect_api")
def test_a_plan_that_breaks_its_contract_fails_in_validate_plan_after_match_ran(
    engine: Engine, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_match = flows.sync_tenant.TASKS.match

    def two_with_one_email(tenant: str, users: pl.DataFrame, held: pl.Series) -> pl.DataFrame:
        plan = real_match(tenant, users, held)
        return plan.with_columns(new_email_norm=pl.lit("same@acme.example"))

    monkeypatch.setattr(flows.sync_tenant, "TASKS", replace(flows.sync_tenant.TASKS, match=two_with_one_email))
    published = summary_markdown_of(monkeypatch)
    with pytest.raises(InvalidPlanError):
        flows.sync_tenant.sync_tenant(tenant)
    run = last_run(engine)
    assert (run.outcome, run.failed_stage) == ("failed", "validate plan")
    assert "Not done: load, report." in published[-1]


@pytest.mark.usefixtures("prefect_api")
def test_the_flow_logs_every_stage_with_its_figures_and_no_personal_data(
    engine: Engine, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    flows.sync_tenant.sync_tenant(tenant)
    logged = [r.getMessage() for r in caplog.records]
    stage_lines = [line for line in logged if line.split(":")[0] in STAGES]
    assert [line.split(":")[0] for line in stage_lines] == list(STAGES)
    assert "match: planned created 4, linked 1; 5 group memberships joined, 0 left" in stage_lines
    assert "load: 5 rows written" in stage_lines
    for line in logged:
        assert "acme.example" not in line and "Nachname" not in line


def test_a_failure_after_the_load_does_not_claim_that_nothing_changed() -> None:
    from tasks.report import failure_markdown

    late = failure_markdown(tenant="acme", run_id="r1", stage="report", reason="unexpected OSError", not_done=[])
    assert "Nothing was changed" not in late  # the load had committed: saying otherwise would be a lie
    assert "changes were applied" in late and "provision run show r1" in late
