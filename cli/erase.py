"""`provision erase`: the GDPR erasure of one employee (store/erase.py), and lifting a suppression."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import engine, explained_errors, fail


def erase(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    email: Annotated[
        str | None, typer.Option(help="The employee's email (any capitals: compared as matching compares emails).")
    ] = None,
    source_id: Annotated[
        str | None, typer.Option("--source-id", help="Or the source user id the employee is linked to.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    lift: Annotated[
        bool, typer.Option("--lift", help="Lift the suppression of an erased person instead: syncs may add them again.")
    ] = False,
    wait: Annotated[
        float | None,
        typer.Option(
            min=0,
            show_default=False,
            help="Seconds to wait for a running sync of the tenant before refusing (default 15; 0: do not wait).",
        ),
    ] = None,
) -> None:
    """Erase an employee (GDPR): delete them and scrub their names and emails from the run history.

    Name them by --email or by --source-id (exactly one). Run counts stay. A sync of the tenant that is running
    is waited for (see --wait); the erasure never interleaves with it. A later sync recreates the person only if
    the source still lists them in a selected group: remove them there first for the erasure to last, or turn on
    `provision suppression TENANT --on`, which keeps an erased person out of later syncs until `--lift`.
    """
    from admin.operations import CLI
    from admin.operations import erase as erase_employee

    if lift:
        from admin.privacy import lift as lift_suppression

        if email is None or source_id is not None:
            fail("--lift takes the erased person's --email (and no --source-id).")
        with explained_errors():
            lift_suppression(engine(), tenant, email, actor=CLI)
        typer.echo(f"Suppression lifted in {tenant}: the next sync may create or link that person again.")
        return
    if (email is None) == (source_id is None):
        fail("Name the employee to erase with exactly one of --email and --source-id.")
    if not yes:
        named = "with that email" if email is not None else "linked to that source user id"
        typer.confirm(f"Erase the employee {named} from tenant {tenant}? This cannot be undone", abort=True)
    with explained_errors():
        erased = erase_employee(engine(), tenant, email, source_id=source_id, actor=CLI, wait=wait)
    suppressed = "; later syncs will neither create nor link them (until --lift)" if erased["suppressed"] else ""
    typer.echo(
        f"Employee {erased['employee_id']} of {tenant} erased; "
        f"personal data scrubbed from {erased['run_changes_scrubbed']} run change records{suppressed}."
    )
