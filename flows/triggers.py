"""What started a run (the audit trail's `trigger`), read from the Prefect run it is part of.

| trigger | when |
|---|---|
| `schedule` | a run the Prefect scheduler created from a deployment's schedule |
| `backfill` | a run started by another flow run (sync-all), as a subflow or through `run_deployment` |
| `manual` | any other run of a deployment: the UI's "Run now", `prefect deployment run`, the API |
| `cli` | the flow called in-process (`provision sync`), outside any deployment |
| `api` | a sync an admin started through the admin API (`POST /tenants/{tenant}/syncs`) |
"""

from __future__ import annotations

from typing import Any

TRIGGERS = ("manual", "schedule", "backfill", "cli", "api")


def trigger_of(flow_run: Any) -> str:
    """The trigger of a Prefect flow run object (`prefect.client.schemas.objects.FlowRun`), or `cli`."""
    if flow_run is None:
        return "cli"
    if getattr(flow_run, "auto_scheduled", False):
        return "schedule"
    if getattr(flow_run, "parent_task_run_id", None) is not None:
        return "backfill"
    if getattr(flow_run, "deployment_id", None) is not None:
        return "manual"
    return "cli"


def current_trigger() -> str:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return trigger_of(context.flow_run if context else None)
