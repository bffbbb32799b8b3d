"""`provision erase`: the GDPR erasure of one employee (store/erase.py), and lifting a suppression."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import engine, explained_errors


def erase(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    email: Annotated[str, typer.Option(help="The employee's email (compared case-insensitively).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    lift: Annotated[
        bool, typer.Option("--lift", help="Lift the suppression of an erased person instead: syncs may add them again.")
    ] = False,
) -> None:
    """Erase an employee (GDPR): delete them and scrub their names and emails from the run history.

    Run counts stay. A later sync recreates the person only if the source still lists them in a
    selected group: remove them there first for the erasure to last, or turn on `provision suppression
    TENANT --on`, which keeps an erased person out of later syncs until `--lift`.
    """
    from admin.operations import CLI
    from admin.operations import erase as erase_employee

    if lift:
        from admin.privacy import lift as lift_suppression

        with explained_errors():
            lift_suppression(engine(), tenant, email, actor=CLI)
        typer.echo(f"Suppression lifted in {tenant}: the next sync may create or link that person again.")
        return
    if not yes:
        typer.confirm(f"Erase the employee with that email from tenant {tenant}? This cannot be undone", abort=True)
    with explained_errors():
        erased = erase_employee(engine(), tenant, email, actor=CLI)
    suppressed = "; later syncs will neither create nor link them (until --lift)" if erased["suppressed"] else ""
    typer.echo(
        f"Employee {erased['employee_id']} of {tenant} erased; "
        f"personal data scrubbed from {erased['run_changes_scrubbed']} run change records{suppressed}."
    )
