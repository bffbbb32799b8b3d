"""The one assembly of the sync's stages, in order, that the flow, the CLI, the demo, the bench and the tests
call (design.md, "The per-tenant flow"). Prefect-free: a door passes the stage functions it wants called
(the plain ones, or the flow's task wrappers of the same functions)."""

from pipeline.run import (
    PLAIN,
    STAGES,
    PlannedRun,
    Progress,
    Selection,
    Stages,
    load_planned,
    plan_run,
    plan_snapshot,
    read_groups,
    refresh_groups,
    sync_run,
)

__all__ = [
    "PLAIN",
    "STAGES",
    "PlannedRun",
    "Progress",
    "Selection",
    "Stages",
    "load_planned",
    "plan_run",
    "plan_snapshot",
    "read_groups",
    "refresh_groups",
    "sync_run",
]
