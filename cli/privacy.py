"""The data-protection commands of `provision` (admin/privacy.py): export, suppression, retention, tenant delete.
Registered by cli/main.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import emit, engine, explained_errors, fail, quiet_prefect

retention_app = typer.Typer(
    help="Names and emails leave the run history after each tenant's retention period.", no_args_is_help=True
)


def export(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    email: Annotated[str, typer.Option(help="The person's email (compared as matching compares it).")],
    out: Annotated[
        Path | None, typer.Option(help="Write the JSON document to this file (readable by you only), not stdout.")
    ] = None,
) -> None:
    """Access request (GDPR art. 15): everything stored about one person in a tenant, as one JSON document.

    The employee row, group memberships, every run change that names them (old -> new), the audit entries about
    them, and whether they are on the suppression list; nothing about anyone else.
    """
    from admin.operations import CLI
    from admin.privacy import export_person

    with explained_errors():
        document = export_person(engine(), tenant, email, actor=CLI)
    text = json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    with explained_errors():
        # Created private: the file holds one person's data (a file already there keeps its own mode).
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
    counts = f"{len(document['run_changes'])} run changes, {len(document['audit'])} audit entries"
    typer.echo(f"Export of one person of {tenant} written to {out} ({counts}).")


def suppression(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    on: Annotated[
        bool | None,
        typer.Option("--on/--off", help="Suppress erased people in later syncs, or stop (the list is kept)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show or change whether an erasure also suppresses the person, so that later syncs neither create nor link
    them (until `provision erase TENANT --email E --lift`). Off by default; needs PROVISIONING_SUPPRESSION_SECRET."""
    from admin.operations import CLI
    from admin.privacy import change_privacy
    from store.suppressions import privacy_settings

    with explained_errors():
        current = (
            privacy_settings(engine(), tenant)
            if on is None
            else change_privacy(engine(), tenant, actor=CLI, suppress_erased=on)
        )

    def render(c: dict[str, Any]) -> None:
        state = "on: erased people are not created or linked again" if c["suppress_erased"] else "off"
        typer.echo(f"Tenant {tenant}: suppression after erasure {state}; {c['suppressed']} people on the list.")

    emit(current.as_dict(), as_json, render)


@retention_app.command("period")
def retention_period(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    days: Annotated[int | None, typer.Option(help="Scrub names and emails from runs older than this (1-3650).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show or change the tenant's retention period (default 90 days)."""
    from admin.operations import CLI
    from admin.privacy import change_privacy
    from store.suppressions import privacy_settings

    with explained_errors():
        current = (
            privacy_settings(engine(), tenant)
            if days is None
            else change_privacy(engine(), tenant, actor=CLI, retention_days=days)
        )

    def render(c: dict[str, Any]) -> None:
        typer.echo(f"Tenant {tenant}: names and emails leave the run history {c['retention_days']} days after the run.")

    emit(current.as_dict(), as_json, render)


@retention_app.command("run")
def retention_run(
    tenant: Annotated[list[str] | None, typer.Option("--tenant", help="Only this tenant (repeat).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be scrubbed; write nothing.")] = False,
    batch_rows: Annotated[int, typer.Option(help="Run change rows per transaction.")] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Also print Prefect's log lines of the run.")] = False,
) -> None:
    """Run the retention flow now (as its daily deployment does): every tenant's run history (or the given
    tenants') loses names and emails past the tenant's retention period; prints the rows scrubbed per tenant."""
    if batch_rows < 1:
        fail("--batch-rows must be at least 1.")
    if tenant:  # an unknown tenant is said before Prefect starts
        from sqlalchemy.orm import Session

        from store.repo import get_tenant

        with explained_errors(), Session(engine()) as session:
            for name in tenant:
                get_tenant(session, name)
    quiet_prefect(verbose)
    from flows.retention import retention

    with explained_errors():
        results = retention(tenants=tenant or None, dry_run=dry_run, batch_rows=batch_rows)

    def render(results: dict[str, dict[str, Any]]) -> None:
        if not results:
            typer.echo("No tenants yet: nothing to scrub.")
        verb = "would scrub" if dry_run else "scrubbed"
        for name, r in results.items():
            batches = "" if dry_run else f" in {r['batches']} batches (longest {r['longest_batch_seconds']} s)"
            typer.echo(
                f"{name:<24} {verb} {r['rows']} run change rows of {r['runs']} runs before {r['cutoff'][:10]}{batches}"
            )

    emit(results, as_json, render)


def tenant_delete(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking (needed when not at a terminal).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Offboard a customer: delete every row of the tenant in every table, its Prefect deployments (and flow runs
    and artifacts), and its Unified.to connection; refused while a run of the tenant is in progress."""
    from admin.operations import CLI
    from admin.privacy import delete_tenant

    if not dry_run and not yes:
        if not sys.stdin.isatty():
            fail(f"Deleting tenant {tenant} needs --yes when not asked at a terminal.")
        with explained_errors():
            preview = delete_tenant(engine(), tenant, dry_run=True, actor=CLI)
        _render_deletion(preview.as_dict())
        if not typer.confirm(f"Delete tenant {tenant} and all of the above? This cannot be undone", default=False):
            fail("Nothing deleted.")
    with explained_errors():
        done = delete_tenant(engine(), tenant, dry_run=dry_run, actor=CLI)
    emit(done.as_dict(), as_json, _render_deletion)


def _render_deletion(d: dict[str, Any]) -> None:
    verb = "would remove" if d["dry_run"] else "removed"
    typer.echo(f"Tenant {d['tenant']}: {verb}" + (" (dry run: nothing deleted)" if d["dry_run"] else ""))
    for table, n in d["rows"].items():
        typer.echo(f"  {table:<18} {n} rows")
    if d["unified_connection"] is None:
        typer.echo("  Unified.to         no live connection")
    else:
        gone = "" if d["unified_known"] else " (Unified.to no longer knew it)"
        typer.echo(f"  Unified.to         connection {d['unified_connection']}{gone}")
    prefect = d["prefect"]
    if prefect is not None:
        deployments = ", ".join(prefect["deployments"]) or "no deployments"
        typer.echo(
            f"  Prefect            {deployments}; {prefect['flow_runs']} flow runs; {prefect['artifacts']} artifacts"
        )
    for note in d["notes"]:
        typer.echo(note)


def register(app: typer.Typer, tenant_app: typer.Typer) -> None:
    app.command()(export)
    app.command()(suppression)
    app.add_typer(retention_app, name="retention")
    tenant_app.command("delete")(tenant_delete)
