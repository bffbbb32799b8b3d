"""Alerts: a run that nobody is watching and that failed or was stopped by the guard emits a Prefect event.

The rule (`alert_event`) is written here and nowhere else. `provision deploy` keeps the automation that turns
these events into a notification to the platform (deployments/alerts.py), so the admin hears about it.

| outcome | unattended trigger (schedule, backfill, webhook) | a person is watching (cli, manual, api) |
|---|---|---|
| `failed` | `provisioning.sync.failed` | nothing |
| `stopped_by_guard` | `provisioning.sync.stopped-by-guard` | nothing |
| anything else (`succeeded`, `refused`, `skipped_late`) | nothing | nothing |

A dry run never alerts: it changes nothing, and whoever asked for one reads its outcome.
"""

from __future__ import annotations

import logging
from typing import Any

FAILED_EVENT = "provisioning.sync.failed"
STOPPED_BY_GUARD_EVENT = "provisioning.sync.stopped-by-guard"
EVENTS = {"failed": FAILED_EVENT, "stopped_by_guard": STOPPED_BY_GUARD_EVENT}  # by the run row's outcome
# Runs whose outcome nobody is looking at: the Prefect scheduler's, each tenant's run in a backfill (whoever
# started it reads one summary for many tenants), and (when it comes) a source webhook's (design.md,
# Near-real-time). The other triggers are a person at a terminal, the UI's Run now or the settings page, who
# sees the outcome where they started the run.
UNATTENDED_TRIGGERS = frozenset({"schedule", "backfill", "webhook"})
# What an alert carries, all from the run row: ids, words and the row's error sentence, never personal data.
PAYLOAD_FIELDS = ("tenant", "run_id", "trigger", "outcome", "failed_stage", "error")

_log = logging.getLogger("provisioning.alerts")


def alert_event(outcome: str, trigger: str, *, dry_run: bool = False) -> str | None:
    """The event a run with this outcome and trigger emits, or None (the module docstring's table)."""
    if dry_run or trigger not in UNATTENDED_TRIGGERS:
        return None
    return EVENTS.get(outcome)


def tenant_resource_id(tenant: str) -> str:
    """The Prefect resource id an alert is about (the automation matches on its prefix)."""
    return f"provisioning.tenant.{tenant}"


def alert_run_end(
    tenant: str,
    run_id: str,
    *,
    trigger: str,
    outcome: str,
    failed_stage: str | None = None,
    error: str | None = None,
    dry_run: bool = False,
) -> None:
    """Emit the run's alert if the rule says so; call it once, where the run row is finished.

    `error` is the run row's sentence: `domain.errors.describe` (an ExplainedError's message, written
    without personal data, or the exception's type alone) or the guard's reason (counts only).
    Never raises: an alert that cannot be emitted is a warning, and the run's outcome stays what it is.
    """
    event = alert_event(outcome, trigger, dry_run=dry_run)
    if event is None:
        return
    payload: dict[str, Any] = {
        "tenant": tenant,
        "run_id": run_id,
        "trigger": trigger,
        "outcome": outcome,
        "failed_stage": failed_stage,
        "error": error,
    }
    try:
        from prefect.events import emit_event

        # Prefect's events worker adds the flow run (and its flow and deployment) as related resources.
        emit_event(
            event,
            resource={"prefect.resource.id": tenant_resource_id(tenant), "prefect.resource.name": tenant},
            related=[{"prefect.resource.id": f"provisioning.run.{run_id}", "prefect.resource.role": "sync-run"}],
            payload=payload,
        )
    except Exception as exc:  # the alert is about the run; it must not become the run's failure
        _warn(f"the alert {event} of run {run_id} (tenant {tenant}) was not emitted: {type(exc).__name__}")


def _warn(message: str) -> None:
    """To the flow run's log when there is one (the Prefect UI shows it), else to this module's logger."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        get_run_logger().warning(message)
    except MissingContextError:
        _log.warning(message)
