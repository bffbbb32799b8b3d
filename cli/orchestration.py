"""The orchestration commands of `provision`: schedule, deploy, sync-all. Registered by cli/main.py."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.common import emit, engine, explained_errors, fail, render_counts, run_sync


def apply_to_prefect(tenant: str) -> None:
    """Reconcile the tenant's deployment now when a Prefect server is configured; else say how to."""
    from admin.operations import apply_schedule

    with explained_errors():
        done = apply_schedule(engine(), tenant)
    if done is None:
        typer.echo("No Prefect server configured (PREFECT_API_URL): run `provision deploy` against it to apply.")
        return
    changes = [f"{what} {', '.join(names)}" for what, names in done.items() if names and what != "unchanged"]
    typer.echo("Prefect: " + ("; ".join(changes) if changes else "already up to date") + ".")


def schedule(
    tenant: str,
    every: Annotated[str | None, typer.Option(help="Interval, e.g. 24h, 30m, 1d; at least 5m.")] = None,
    cron: Annotated[
        str | None,
        typer.Option(
            help='Five-field cron string (minute hour day month weekday), e.g. "0 3 * * *"; at most every 5 min.'
        ),
    ] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of the schedule, e.g. Europe/Berlin.")] = None,
    off: Annotated[bool, typer.Option("--off", help="No automatic sync any more.")] = False,
    sync_now: Annotated[bool, typer.Option("--sync", help="Save, then run the first sync at once.")] = False,
) -> None:
    """Set (or remove) the tenant's automatic sync schedule; applied to Prefect with `provision deploy`."""
    from admin.operations import CLI, save_settings
    from domain.schedules import checked, parse_every

    if off and (every or cron):
        fail("Use either --off or a schedule (--every / --cron), not both.")
    with explained_errors():
        if off:
            save_settings(engine(), tenant, actor=CLI, schedule=None)
            typer.echo(f"Tenant {tenant} has no automatic sync any more.")
        else:
            wanted = checked(cron, parse_every(every) if every else None, timezone)
            save_settings(engine(), tenant, actor=CLI, schedule=wanted)
            typer.echo(f"Tenant {tenant} syncs automatically: {wanted.describe()}.")
    apply_to_prefect(tenant)
    if sync_now:
        render_counts(run_sync(tenant, dry_run=False))


def deploy(
    work_pool: Annotated[str, typer.Option(help="The Prefect work pool the deployments run on.")] = "provisioning",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Reconcile Prefect with every tenant's schedule at once: one deployment per scheduled tenant, and the
    automation that alerts on failed and guard-stopped unattended runs (PROVISIONING_ALERT_WEBHOOK_URL). Idempotent."""
    from admin.runs import prefect_server_configured
    from deployments.alerts import reconcile_alerts
    from deployments.reconcile import reconcile
    from settings import get_settings

    if not prefect_server_configured():
        fail("No Prefect server configured; set PREFECT_API_URL to your server's API (http://host:4200/api).")
    with explained_errors():
        alert_url = get_settings().alert_webhook()  # checked before anything changes
        done: dict[str, Any] = reconcile(engine(), work_pool=work_pool).as_dict()
        alerts = reconcile_alerts(alert_url)
    done["alerts"] = {"state": alerts.state, "target": alerts.target}

    def render(done: dict[str, Any]) -> None:
        for what, names in done.items():
            if what != "alerts":
                typer.echo(f"{what:<10} {', '.join(names) or '-'}")
        typer.echo(f"{'alerts':<10} {alerts.state}: {alerts.describe()}")

    emit(done, as_json, render)


def sync_all_command(
    tenant: Annotated[list[str] | None, typer.Option("--tenant", help="Only this tenant (repeat).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and report everything, write nothing.")] = False,
    max_concurrent: Annotated[int, typer.Option(help="How many tenants at once.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Backfill: sync every configured tenant (or the given ones), each as its own flow run."""
    from flows.sync_all import sync_all

    if max_concurrent < 1:
        fail("--max-concurrent must be at least 1.")
    if tenant:  # every named tenant must exist before a single run starts
        from sqlalchemy.orm import Session

        from store.repo import get_tenant

        with explained_errors(), Session(engine()) as session:
            for name in tenant:
                get_tenant(session, name)
    with explained_errors():
        results = sync_all(tenants=tenant or None, dry_run=dry_run, max_concurrent=max_concurrent)

    def render(results: dict[str, dict[str, Any]]) -> None:
        for name, r in results.items():
            typer.echo(f"{name:<24} {r['outcome']:<17} {r.get('error') or r.get('run_id') or ''}")

    emit(results, as_json, render)
    if any(r["outcome"] != "succeeded" for r in results.values()):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(schedule)
    app.command()(deploy)
    app.command("sync-all")(sync_all_command)
