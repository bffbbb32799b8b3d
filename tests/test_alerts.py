"""Alerts: an unattended run that fails or is stopped by the guard reaches the platform's webhook exactly once,
through the Prefect automation `provision deploy` keeps; a run someone is watching sends nothing, and an alert
carries ids and words, never an employee's name or email."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import prefect.events
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from deployments.alerts import AUTOMATION_NAME, MESSAGE, redacted
from flows.alerts import FAILED_EVENT, STOPPED_BY_GUARD_EVENT, UNATTENDED_TRIGGERS, alert_event, alert_run_end
from flows.triggers import TRIGGERS
from settings import AlertSettingError, Settings
from simulator.faults import Fault
from store.db import make_engine
from store.models import Run
from tests.prefect_server import free_port, prefect_server, prefect_settings, sync_in_own_process
from tests.processes import clean_env, run_provision
from tests.upstreams import TOKEN, Upstream, in_one_group, setup_tenant, staff

# ---- the rule, the message, the setting: fast ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "trigger", "expected"),
    [
        ("failed", "schedule", FAILED_EVENT),
        ("failed", "backfill", FAILED_EVENT),
        ("failed", "webhook", FAILED_EVENT),  # the trigger of webhook-started runs, once they come
        ("stopped_by_guard", "schedule", STOPPED_BY_GUARD_EVENT),
        ("stopped_by_guard", "backfill", STOPPED_BY_GUARD_EVENT),
        ("stopped_by_guard", "webhook", STOPPED_BY_GUARD_EVENT),
        ("failed", "cli", None),  # a person at the terminal sees it
        ("failed", "manual", None),  # Run now in the Prefect UI
        ("failed", "api", None),  # Sync now on the settings page, which shows the run
        ("stopped_by_guard", "cli", None),
        ("stopped_by_guard", "api", None),
        ("succeeded", "schedule", None),
        ("refused", "schedule", None),  # another run of the tenant holds the lock: that one alerts if it fails
        ("skipped_late", "schedule", None),  # the next slot syncs
    ],
)
def test_only_unattended_runs_that_failed_or_were_stopped_by_the_guard_alert(
    outcome: str, trigger: str, expected: str | None
) -> None:
    assert alert_event(outcome, trigger) == expected


def test_a_dry_run_never_alerts() -> None:
    assert alert_event("failed", "backfill", dry_run=True) is None
    assert alert_event("stopped_by_guard", "backfill", dry_run=True) is None


def test_every_trigger_a_run_can_have_is_either_unattended_or_watched() -> None:
    watched = set(TRIGGERS) - UNATTENDED_TRIGGERS
    assert watched == {"cli", "manual", "api"}
    assert UNATTENDED_TRIGGERS - set(TRIGGERS) == {"webhook"}  # accepted before the trigger exists


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_an_alert_that_cannot_be_emitted_is_a_warning_not_the_runs_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("no events today")

    # why: on the logger itself, not caplog's root handler: Prefect may configure logging (and replace the root's
    # handlers) the first time the warning imports it
    recorded = Recorded()
    monkeypatch.setattr(prefect.events, "emit_event", broken)
    logging.getLogger("provisioning.alerts").addHandler(recorded)
    try:
        alert_run_end("acme", "run-1", trigger="schedule", outcome="failed", failed_stage="extract", error="x")
    finally:
        logging.getLogger("provisioning.alerts").removeHandler(recorded)
    assert recorded.messages == [
        "the alert provisioning.sync.failed of run run-1 (tenant acme) was not emitted: RuntimeError"
    ]


def test_the_message_is_one_json_object_whatever_the_error_sentence_holds() -> None:
    from prefect.events import Event
    from prefect.server.events.jinja_filters import all_filters
    from prefect.server.utilities.user_templates import register_user_template_filters, render_user_template_sync

    register_user_template_filters(all_filters)
    payload = {
        "tenant": "acme",
        "run_id": "r-1",
        "trigger": "schedule",
        "outcome": "failed",
        "failed_stage": None,
        "error": 'the source said "no" <b>&</b> \\ {{ not a template }}',
    }
    event = Event(event=FAILED_EVENT, resource={"prefect.resource.id": "provisioning.tenant.acme"}, payload=payload)
    body = json.loads(render_user_template_sync(MESSAGE, {"event": event}))
    assert body == {"event": FAILED_EVENT, "event_id": str(event.id), "occurred": event.occurred.isoformat(), **payload}
    by_hand = Event(event=FAILED_EVENT, resource={"prefect.resource.id": "provisioning.tenant.acme"}, payload={})
    assert json.loads(render_user_template_sync(MESSAGE, {"event": by_hand}))["tenant"] is None  # not a failed render


def test_the_alert_webhook_setting_is_an_http_url_and_is_never_shown_whole() -> None:
    assert Settings(alert_webhook_url=None).alert_webhook() is None
    assert Settings(alert_webhook_url=SecretStr("  ")).alert_webhook() is None
    url = "https://platform.example/hooks/provisioning?token=s3cret"
    checked = Settings(alert_webhook_url=SecretStr(url)).alert_webhook()
    assert checked is not None and checked.get_secret_value() == url
    assert redacted(url) == "https://platform.example/..."
    assert redacted("http://[::1]:8080") == "http://[::1]:8080"
    for wrong in (
        "ftp://s3cret.example/x",
        "s3cret.example/hooks",
        "https:///s3cret",
        "http://h:0/s3cret",
        "http://[s3cret",
    ):
        with pytest.raises(AlertSettingError) as refused:
            Settings(alert_webhook_url=SecretStr(wrong)).alert_webhook()
        assert "s3cret" not in str(refused.value)  # the value may carry a token


# ---- the real thing: a Prefect server, its automation, a webhook receiver: slow ------------------------------


@dataclass
class Receiver:
    """The platform's end of the webhook: a loopback HTTP server that records every POST."""

    url: str
    posts: list[tuple[str, str]] = field(default_factory=list)  # (path with query, body)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.posts)


@contextmanager
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            with holder[0].lock:
                holder[0].posts.append((self.path, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()


def wait_for(receiver: Receiver, count: int, timeout: float) -> list[tuple[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(receiver.received()) < count:
        time.sleep(0.25)
    return receiver.received()


def automations_named(api: str, name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return [a for a in client.read_automations() if a.name == name]


@pytest.mark.slow  # why: a real `prefect server` and a process per run and deploy: about two minutes on 2 cores
def test_unattended_runs_that_fail_or_are_stopped_by_the_guard_reach_the_webhook_once_each(
    tmp_path: Path, sqlite_url: str, upstream: Upstream
) -> None:
    api = f"http://127.0.0.1:{free_port()}/api"
    people = staff(12)
    upstream.source.replace(in_one_group(people))
    engine = make_engine(sqlite_url)
    setup_tenant(engine, upstream, ["g"])
    with receiver() as platform, prefect_server(tmp_path, {**clean_env(tmp_path), **prefect_settings(tmp_path, api)}):
        hook = f"{platform.url}/hooks/provisioning?token=s3cret"
        env = {
            **clean_env(tmp_path),
            **prefect_settings(tmp_path, api),
            "PROVISIONING_DATABASE_URL": sqlite_url,
            "UNIFIED_API_TOKEN": TOKEN,
            "PROVISIONING_ALERT_WEBHOOK_URL": hook,
        }
        deployed = run_provision("deploy", env=env)
        assert deployed.returncode == 0, deployed.stderr
        assert "alerts     created" in deployed.stdout and "s3cret" not in deployed.stdout + deployed.stderr

        assert run_provision("sync", "acme", env=env).returncode == 0  # 12 synced employees
        upstream.faults.add(Fault(status=401, kind="employee", sticky=True))
        assert run_provision("sync", "acme", env=env).returncode == 1  # cli: someone is watching
        scheduled = sync_in_own_process("acme", "schedule", env)
        assert scheduled.returncode != 0 and "SourceAuthError" in scheduled.stderr, scheduled.stderr[-2000:]
        upstream.faults.clear()
        upstream.faults.add(Fault(empty=True, kind="employee", sticky=True))
        stopped = sync_in_own_process("acme", "schedule", env)
        assert stopped.returncode != 0 and "GuardTripped" in stopped.stderr, stopped.stderr[-2000:]

        with engine.connect() as conn:
            runs = conn.execute(
                select(Run.id, Run.tenant_id, Run.trigger, Run.outcome, Run.failed_stage, Run.error).order_by(
                    Run.started_at
                )
            ).all()
        assert [(r.trigger, r.outcome) for r in runs] == [
            ("cli", "succeeded"),
            ("cli", "failed"),
            ("schedule", "failed"),
            ("schedule", "stopped_by_guard"),
        ]
        assert (runs[2].failed_stage, runs[3].failed_stage) == ("extract", None)

        wait_for(platform, 2, timeout=60)
        time.sleep(5)  # the two came within a second of their events: a duplicate, or the cli run's, would be here
        posts = platform.received()
        assert len(posts) == 2, posts
        assert {path for path, _ in posts} == {"/hooks/provisioning?token=s3cret"}
        bodies = sorted((json.loads(text) for _, text in posts), key=lambda body: body["run_id"])
        stamps = [(body.pop("event_id"), body.pop("occurred")) for body in bodies]
        assert all(event_id and occurred for event_id, occurred in stamps)
        events = {"failed": "provisioning.sync.failed", "stopped_by_guard": "provisioning.sync.stopped-by-guard"}
        expected = [  # each alert says what its run row says
            {
                "event": events[row.outcome],
                "tenant": row.tenant_id,
                "run_id": str(row.id),
                "trigger": row.trigger,
                "outcome": row.outcome,
                "failed_stage": row.failed_stage,
                "error": row.error,
            }
            for row in runs[2:]
        ]
        assert bodies == sorted(expected, key=lambda body: body["run_id"])
        assert all(body["error"] for body in bodies)
        for _, body in posts:  # ids and words only: no employee's email or name
            assert "@" not in body and "acme.example" not in body
            assert not any(p["first_name"] in body or p["last_name"] in body for p in people)

        again = run_provision("deploy", "--json", env=env)
        assert json.loads(again.stdout)["alerts"] == {"state": "unchanged", "target": f"{platform.url}/..."}
        assert len(automations_named(api, AUTOMATION_NAME)) == 1

        moved = run_provision("deploy", env={**env, "PROVISIONING_ALERT_WEBHOOK_URL": f"{platform.url}/elsewhere"})
        assert "alerts     updated" in moved.stdout, moved.stdout + moved.stderr
        assert len(automations_named(api, AUTOMATION_NAME)) == 1

        off = run_provision("deploy", env={k: v for k, v in env.items() if k != "PROVISIONING_ALERT_WEBHOOK_URL"})
        assert "alerts     removed" in off.stdout, off.stdout + off.stderr
        assert automations_named(api, AUTOMATION_NAME) == []
    engine.dispose()
