"""The `provision` command: thin over the store, the sources and the flow.

Every command exits non-zero with one clear sentence when it cannot do what was asked.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cli import erase as erase_command
from cli import explain as explain_command
from cli import orchestration, privacy, service
from cli.common import (
    OneLineUsageErrors,
    emit,
    engine,
    explained_errors,
    fail,
    quiet_prefect,
    render_counts,
    run_sync,
)
from domain.policy import Policy
from domain.words import PROVIDERS, STATUSES
from simulator.faults import FAULT_SPEC_HELP

# The product never phones home (and has no internet where it runs): Prefect's server telemetry off.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The first embedded (ephemeral) Prefect server in a fresh home creates and migrates its own database,
# which takes longer than Prefect's 20 s default on a small machine: `provision demo` failed there.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

app = typer.Typer(
    help="Keep each tenant's employees in step with its HR system or identity provider.",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineUsageErrors,  # a usage mistake is one `Error:` line and exit code 1, like every refusal
)
tenant_app = typer.Typer(help="Create tenants, list them, show one.", no_args_is_help=True)
employee_app = typer.Typer(help="Manage employees by hand.", no_args_is_help=True)
db_app = typer.Typer(help="The employee database.", no_args_is_help=True)
run_app = typer.Typer(help="Inspect one run.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(employee_app, name="employee")
app.add_typer(db_app, name="db")
app.add_typer(run_app, name="run")


@tenant_app.command("add")
def tenant_add(
    tenant: Annotated[str, typer.Argument(help="Tenant id, e.g. acme.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Create a tenant."""
    from store.repo import add_tenant

    with explained_errors():
        add_tenant(engine(), tenant, name)
    typer.echo(f"Tenant {tenant} created.")


def _describe_schedule(schedule: dict[str, Any] | None) -> str:
    from domain.schedules import Schedule

    return "off" if schedule is None else Schedule(**schedule).describe()


def _describe_run(run: dict[str, Any] | None) -> str:
    if run is None:
        return "none yet"
    why = f" ({run['failed_stage'] or 'run'}: {run['error']})" if run["error"] else ""
    dry = " (dry run)" if run["dry_run"] else ""
    return f"{run['outcome']}{dry} at {run['started_at']}, run {run['run_id']}{why}"


@tenant_app.command("list")
def tenant_list(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """Every tenant: its integration, schedule and last run."""
    from store.repo import list_tenants

    with explained_errors():
        rows = list_tenants(engine())

    def render(rows: list[dict[str, Any]]) -> None:
        if not rows:
            typer.echo("No tenants yet; create one with `provision tenant add TENANT`.")
        for r in rows:
            integration = r["integration"] + (f" ({r['provider']})" if r["provider"] else "")
            last = r["last_run"]["outcome"] if r["last_run"] else "no runs"
            schedule = _describe_schedule(r["schedule"])
            typer.echo(f"{r['tenant']:<24} {integration:<24} {schedule:<36} {last:<17} {r['name']}")

    emit(rows, as_json, render)


@tenant_app.command("show")
def tenant_show(
    tenant: Annotated[str, typer.Argument(help="Tenant id, e.g. acme.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """One tenant's state in one place: integration, provider, connection, selection, schedule, guard,
    employees per status, last run."""
    from admin.operations import tenant_overview

    with explained_errors():
        overview = tenant_overview(engine(), tenant)

    def render(o: dict[str, Any]) -> None:
        i = o["integration"]
        if i["state"] == "not_connected":
            integration = f"not connected; connect it with `provision connect {tenant}`"
        elif i["state"] == "active":
            health = f", last run {i['health']}" if i["health"] else ""
            integration = f"active: {i['provider']}, connection {i['connection_id']} at {i['base_url']}{health}"
        else:
            integration = f"{i['state']} (was {i['provider']}): nothing syncs"
        selection = o["selection"]
        if selection is None:
            selected = "-"
        elif selection["all_users"]:
            selected = "all users"
        elif selection["groups"]:
            selected = ", ".join(f"{g['group_id']} ({g['name'] or 'no name'})" for g in selection["groups"])
        else:
            selected = f"no groups yet; choose them with `provision filter {tenant}`"
        guard = o["guard"]
        guarded = (
            "-"
            if guard is None
            else f"stops a run that would flag more than {guard['max_share'] * 100:g}% of the employees "
            f"and at least {guard['min_count']} of them"
        )
        totals = ", ".join(f"{status} {n}" for status, n in sorted(o["employees"].items())) or "none"
        typer.echo(f"Tenant {o['tenant']} ({o['name']}), created {o['created_at']}")
        for label, value in [
            ("integration", integration),
            ("selection", selected),
            ("schedule", _describe_schedule(o["schedule"])),
            ("guard", guarded),
            ("policy", "-" if o["policy"] is None else Policy(**o["policy"]).describe()),
            ("employees", totals),
            ("last run", _describe_run(o["last_run"])),
        ]:
            typer.echo(f"  {label:<12} {value}")

    emit(overview, as_json, render)


@employee_app.command("add")
def employee_add(
    tenant: str,
    email: Annotated[str, typer.Option(help="Work email.")],
    first_name: Annotated[str, typer.Option(help="First name.")],
    last_name: Annotated[str, typer.Option(help="Last name.")],
) -> None:
    """Create an employee by hand (unlinked: the next sync matches it by email)."""
    from admin.operations import CLI, create_employee

    with explained_errors():
        create_employee(engine(), tenant, email=email, first_name=first_name, last_name=last_name, actor=CLI)
    typer.echo(f"Employee added to {tenant}.")


@employee_app.command("delete")
def employee_delete(
    tenant: str,
    employee_id: Annotated[int | None, typer.Option("--id", help="The one employee to delete.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Every employee of this status: non_matching, terminated or unmanaged.")
    ] = None,
    older_than: Annotated[
        str | None, typer.Option(help="With --status: only those unchanged for this long, e.g. 30d.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking (needed when not at a terminal).")] = False,
) -> None:
    """Delete flagged or unmanaged employees by hand: one by id, or all of one status; `synced` ones never."""
    import sys

    from admin.operations import CLI, deletable_employees, delete_employee, delete_employees
    from domain.schedules import duration_seconds

    if (employee_id is None) == (status is None):
        fail("Give either --id ID or --status STATUS.")
    if older_than is not None and status is None:
        fail("--older-than goes with --status.")
    with explained_errors():
        if employee_id is not None:
            if dry_run:
                fail("--dry-run goes with --status; `provision employees` shows one employee's status.")
            delete_employee(engine(), tenant, employee_id, actor=CLI)
            typer.echo(f"Employee {employee_id} deleted from {tenant}.")
            return
        assert status is not None
        age = duration_seconds(older_than, "a duration") if older_than else None
        chosen = deletable_employees(engine(), tenant, status=status, flagged_for_seconds=age)
    for row in chosen:
        typer.echo(f"{row['id']:>8}  {row['email']:<40} {status} since {row['since'][:16].replace('T', ' ')}")
    if dry_run or not chosen:
        typer.echo(
            f"{len(chosen)} {status} employee(s) would be deleted (dry run: nothing deleted)."
            if dry_run
            else f"No {status} employee of {tenant} to delete."
        )
        return
    if not yes:
        if not sys.stdin.isatty():
            fail(f"Deleting {len(chosen)} employee(s) needs --yes when not asked at a terminal.")
        if not typer.confirm(f"Delete these {len(chosen)} employee(s) of {tenant}?", default=False):
            fail("Nothing deleted.")
    with explained_errors():
        done = delete_employees(engine(), tenant, [row["id"] for row in chosen], status=status, actor=CLI)
    typer.echo(f"{done} {status} employee(s) deleted from {tenant}.")


@app.command()
def connect(
    tenant: str,
    provider: Annotated[str, typer.Option(help="entra, personio or google.")],
    connection_id: Annotated[str, typer.Option(help="The Unified.to connection id of the tenant.")],
    base_url: Annotated[str | None, typer.Option(help="Unified.to API base URL (region).")] = None,
    check: Annotated[
        bool, typer.Option(help="Check the connection at Unified.to and read the source once before saving.")
    ] = True,
) -> None:
    """Connect a tenant to its source through Unified.to (token: UNIFIED_API_TOKEN or a Prefect Secret).

    Connecting reads the source once and stores its group list, so `provision filter` can follow at once.
    """
    from admin.operations import CLI, connect_tenant
    from settings import get_settings

    if provider not in PROVIDERS:
        fail(f"Unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}.")
    with explained_errors():
        done = connect_tenant(
            engine(),
            tenant,
            provider=provider,
            connection_id=connection_id,
            base_url=base_url or get_settings().unified_base_url,
            actor=CLI,
            verify=check,
        )
    listed = f"; {done.users} users and {done.groups} groups listed" if done.users is not None else ""
    typer.echo(f"Tenant {tenant} connected to {provider} (connection {connection_id}){listed}.")
    if done.note:
        typer.echo(done.note)


@app.command()
def groups(
    tenant: str,
    selected: Annotated[
        bool,
        typer.Option("--selected", help="Only the groups the tenant syncs, with how many of its employees each holds."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the source's groups, flattened, fresh from the source: id, type, members, name."""
    from store.repo import integration_settings, selected_groups

    eng = engine()
    if selected:
        with explained_errors():
            held = selected_groups(eng, tenant)

        def render_selected(rows: list[dict[str, Any]]) -> None:
            if not rows:
                typer.echo(f"Tenant {tenant} has no groups selected; `provision filter {tenant}` chooses them.")
            for row in rows:
                name = row["name"] or "(no longer listed by the source)"
                typer.echo(f"{row['group_id']:<28} {row['type'] or '':<14} {row['employees']:>7} employees  {name}")

        fields = ("group_id", "name", "type", "parent_id", "member_count", "employees")
        emit([{k: row[k] for k in fields} for row in held], as_json, render_selected)
        return
    from pipeline import refresh_groups  # the source is read: the stages (Prefect's tasks) only here

    with explained_errors():
        listed = refresh_groups(eng, integration_settings(eng, tenant, require_selection=False))
    rows = listed.select("group_id", "name", "type", "parent_id", "member_count").to_dicts()

    def render(rows: list[dict[str, Any]]) -> None:
        if rows:
            typer.echo(f"{'GROUP ID':<28} {'TYPE':<14} {'MEMBERS':>7}  NAME")
        for row in rows:
            typer.echo(f"{row['group_id']:<28} {row['type'] or '':<14} {row['member_count']:>7}  {row['name'] or ''}")

    emit(rows, as_json, render)


@app.command("filter")
def filter_(
    tenant: str,
    group: Annotated[list[str] | None, typer.Option("--group", help="A group id to sync (repeat).")] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="Sync every user of the source.")] = False,
    sync_now: Annotated[bool, typer.Option("--sync", help="Save and Sync: run the first sync at once.")] = False,
) -> None:
    """Select the groups whose members are synced (or all users)."""
    from admin.operations import CLI, save_settings

    if all_users and group:
        fail("Use either --group or --all-users, not both.")
    with explained_errors():
        save_settings(engine(), tenant, actor=CLI, group_ids=group or [], all_users=all_users)
    typer.echo(f"Tenant {tenant} syncs {'all users' if all_users else ', '.join(group or [])}.")
    if sync_now:
        render_counts(run_sync(tenant, dry_run=False))


@app.command()
def sync(
    tenant: str,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and report everything, write nothing.")] = False,
    override_guard: Annotated[
        bool, typer.Option("--override-guard", help="Apply a run the mass-change guard would stop.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="If another run syncs the tenant, wait for it to end.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Also print Prefect's log lines of the run.")] = False,
) -> None:
    """Sync a tenant now and print the counts."""
    quiet_prefect(verbose)
    result = run_sync(tenant, dry_run=dry_run, override_guard=override_guard, wait_for_lock=wait)
    emit(result, as_json, render_counts)


@app.command()
def guard(
    tenant: str,
    max_share: Annotated[
        float | None, typer.Option(help="Stop a run that would flag more than this share of employees (0.1 = 10%).")
    ] = None,
    min_count: Annotated[int | None, typer.Option(help="... and at least this many of them.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the tenant's mass-change guard, or change its thresholds."""
    from admin.operations import CLI, save_settings
    from store.repo import guard_settings

    with explained_errors():
        if max_share is not None or min_count is not None:
            save_settings(engine(), tenant, actor=CLI, guard_max_share=max_share, guard_min_count=min_count)
        current = guard_settings(engine(), tenant)

    def render(current: dict[str, Any]) -> None:
        typer.echo(
            f"Tenant {tenant}: a run stops before loading when it would flag more than "
            f"{current['max_share'] * 100:g}% of the employees and at least {current['min_count']} of them."
        )

    emit({"max_share": current.max_share, "min_count": current.min_count}, as_json, render)


@app.command()
def policy(
    tenant: str,
    mode: Annotated[
        str | None,
        typer.Option(
            help="flag (default): only flag; deactivate: also inactive for the platform; delete: "
            "deactivate, then delete after the grace period."
        ),
    ] = None,
    grace_days: Annotated[
        int | None, typer.Option(help="Days an employee stays flagged before `delete` removes it (default 30).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the tenant's deprovisioning policy, or change it (applied by the next run)."""
    from admin.operations import CLI, save_settings, tenant_settings

    with explained_errors():
        if mode is not None or grace_days is not None:
            current = save_settings(engine(), tenant, actor=CLI, policy_mode=mode, policy_grace_days=grace_days)
        else:
            current = tenant_settings(engine(), tenant)

    def render(policy: dict[str, Any]) -> None:
        typer.echo(f"Tenant {tenant}: {Policy(**policy).describe()}.")

    emit(current.policy.as_dict(), as_json, render)


@app.command()
def employees(
    tenant: str,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    group: Annotated[str | None, typer.Option(help="Only the members of this group (a group id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List a tenant's employees: email, names, status, link, why a flagged one was flagged, and the end date the
    source gives (`leaves` while ahead, `left` once reached)."""
    from store.repo import list_employees

    if status and status not in STATUSES:
        fail(f"Unknown status {status!r}; choose one of {', '.join(STATUSES)}.")
    with explained_errors():
        rows = list_employees(engine(), tenant, status, group)

    today = datetime.now(UTC).date().isoformat()

    def render(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            name = f"{r['first_name'] or ''} {r['last_name'] or ''}".strip()
            why = f"  ({r['reason']})" if r["reason"] else ""
            if r["leave_date"]:
                why += f"  [{'leaves' if r['leave_date'] > today else 'left'} {r['leave_date']}]"
            status = r["status"] + (", deactivated" if r["deactivated"] else "")
            typer.echo(f"{status:<26} {r['email']:<40} {name:<30} {r['link'] or ''}{why}")

    emit(rows, as_json, render)


@app.command()
def runs(tenant: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """A tenant's run history with counts, newest first."""
    from store.repo import list_runs

    with explained_errors():
        rows = list_runs(engine(), tenant)

    def render(rows: list[dict[str, Any]]) -> None:
        if not rows:
            typer.echo(f"Tenant {tenant} has no runs yet; `provision sync {tenant}` starts one.")
        for r in rows:
            c = r["counts"] or {}
            summary = " ".join(
                f"{k}={c[k]}"
                for k in ("created", "linked", "updated", "non_matching", "terminated", "reactivated")
                if k in c
            )
            dry = " dry-run" if r["dry_run"] else ""
            why = f" [{r['failed_stage'] or ''}: {r['error']}]" if r["error"] else ""
            typer.echo(f"{r['started_at']}  {r['run_id']}  {r['trigger']:<8} {r['outcome']}{dry}  {summary}{why}")

    emit(rows, as_json, render)


@run_app.command("show")
def run_show(run_id: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every change one run made: employee, action, fields old -> new."""
    from domain.ids import shown_id
    from store.repo import run_changes

    with explained_errors():
        rows = run_changes(engine(), run_id)

    def render(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            fields = [f for f in (r["changed_fields"] or "").split(",") if f]
            diff = "; ".join(f"{f}: {r[f'old_{f}']!r} -> {r[f'new_{f}']!r}" for f in fields)
            # A source id is escaped (domain/ids.py): one stored before ids were checked may hold anything.
            source = shown_id(r["source_user_id"] or "(none)")
            who = f"employee {r['employee_id']}" if r["employee_id"] else f"source user {source}"
            typer.echo(f"{r['action']:<13} {who:<28} {diff or r['reason'] or ''}")

    emit(rows, as_json, render)


@app.command()
def disconnect(tenant: str) -> None:
    """End the tenant's integration: employees stay, become unmanaged, nothing syncs any more."""
    from admin.operations import CLI, disconnect_tenant

    with explained_errors():
        done = disconnect_tenant(engine(), tenant, actor=CLI)
    revoked = "deleted at Unified.to" if done.revoked_at_unified else "already gone at Unified.to"
    typer.echo(f"Tenant {tenant} disconnected (connection {revoked}); {done.employees} employees are now unmanaged.")
    orchestration.apply_to_prefect(tenant)  # its scheduled deployment goes too


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (they also apply by themselves on first use)."""
    from settings import database_url
    from store.db import redact

    engine()  # opening it applies what is missing, or says in one sentence why it cannot be opened
    typer.echo(f"Database {redact(database_url())} is up to date.")


@app.command()
def simulator(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 8765,
    users: Annotated[int, typer.Option(help="Users of the generated tenant.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the generated tenant.")] = 0,
    dataset: Annotated[
        Path | None,
        typer.Option(help="A dataset file {employees, groups[, provider, group_endpoint]} to serve instead."),
    ] = None,
    connection_id: Annotated[str, typer.Option(help="The connection id it answers to.")] = "conn-demo",
    token: Annotated[str, typer.Option(help="The API token it accepts.")] = "sim-token",
    fault: Annotated[list[str] | None, typer.Option("--fault", help=escape(FAULT_SPEC_HELP))] = None,
    latency_ms: Annotated[float, typer.Option(help="Delay every request by this many milliseconds.")] = 0,
    slow_seconds: Annotated[float, typer.Option(help="How long a `slow` fault waits before answering.")] = 60,
    workspace_id: Annotated[str, typer.Option(help="The Unified.to workspace id it plays.")] = "ws-sim",
    provider: Annotated[
        str | None,
        typer.Option(
            help="The provider it plays: entra, personio, google. Its first connection's integration type and the "
            "shape of the generated tenant (default: the dataset file's provider, else entra)."
        ),
    ] = None,
    group_endpoint: Annotated[
        str | None,
        typer.Option(
            help="How /hris/group answers: listed (the groups), unsupported (501), empty ([]). "
            "Default: the dataset's, else the provider's (personio: unsupported; entra, google: listed)."
        ),
    ] = None,
    embedded_groups: Annotated[
        bool, typer.Option("--embedded-groups", help="google: also list each user's groups in the employee's groups[].")
    ] = False,
    auth_outcome: Annotated[
        str | None,
        typer.Option(help="Answer the authorization URL at once (authorize, cancel, error) instead of a sign-in page."),
    ] = None,
) -> None:
    """Serve the Unified.to HRIS simulator over HTTP until interrupted, in a provider's shape, optionally with
    injected faults."""
    from simulator.faults import parse_fault_spec
    from simulator.serve import run_simulator_command
    from simulator.source import GROUP_ENDPOINTS

    if dataset is not None and not dataset.is_file():
        fail(f"No dataset file at {dataset}.")
    if provider is not None and provider not in PROVIDERS:
        fail(f"Unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}.")
    if group_endpoint is not None and group_endpoint not in GROUP_ENDPOINTS:
        fail(f"Unknown --group-endpoint {group_endpoint!r}; choose one of {', '.join(GROUP_ENDPOINTS)}.")
    if embedded_groups and (dataset is not None or provider != "google"):
        fail("--embedded-groups shapes a generated google tenant; give --provider google and no --dataset.")
    if auth_outcome not in (None, "authorize", "cancel", "error"):
        fail(f"Unknown --auth-outcome {auth_outcome!r}; choose authorize, cancel or error.")
    for spec in fault or []:
        try:
            parse_fault_spec(spec)
        except ValueError as exc:
            fail(f"{exc}.")
    with explained_errors():  # a dataset that cannot be served, a port that is taken
        run_simulator_command(
            port=port,
            users=users,
            seed=seed,
            dataset=dataset,
            connection_id=connection_id,
            token=token,
            latency_ms=latency_ms,
            faults=fault or [],
            slow_seconds=slow_seconds,
            workspace_id=workspace_id,
            provider=provider,
            auth_outcome=auth_outcome,  # type: ignore[arg-type]
            group_endpoint=group_endpoint,
            embedded_groups=embedded_groups,
        )


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Users of the simulated source.")] = 300,
    serve: Annotated[bool, typer.Option("--serve", help="Then serve the settings page on the result.")] = False,
    port: Annotated[int, typer.Option(help="The settings page's port, with --serve.")] = 8000,
) -> None:
    """The main job on embedded defaults: simulator + SQLite, two syncs with source changes in between;
    with --serve, then the settings page on the demo tenant (it prints the URL and a key to sign in)."""
    from cli.demo import run_demo

    sys.exit(run_demo(users=users, serve_port=port if serve else None))


app.command()(erase_command.erase)
app.command()(explain_command.explain)
orchestration.register(app)
service.register(app)
privacy.register(app, tenant_app)
