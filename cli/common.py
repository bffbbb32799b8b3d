"""What every `provision` command shares: one sentence for an error, the engine, output, running a sync.

The leaf of `cli/`: the command modules import it, it imports none of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from sqlalchemy import Engine


def fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def explained_errors() -> Iterator[None]:
    """Turn the errors written for a person (domain.errors.ExplainedError) into one sentence and exit code 1."""
    from domain.errors import ExplainedError

    try:
        yield
    except ExplainedError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{type(exc).__name__}: {exc.strerror or exc}")


def engine() -> Engine:
    from sqlalchemy.exc import OperationalError

    from settings import database_url
    from store.db import make_engine, redact

    try:
        return make_engine()
    except OperationalError:
        fail(f"Cannot open the employee database at {redact(database_url())}.")


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        render(data)


def render_counts(result: dict[str, Any]) -> None:
    typer.echo(f"Run {result['run_id']}: {result['outcome']}{' (dry run)' if result['dry_run'] else ''}")
    for key, value in result["counts"].items():
        typer.echo(f"  {key:<17} {value}")
    totals = ", ".join(f"{k} {v}" for k, v in result["totals"].items()) or "none"
    typer.echo(f"  employees now: {totals}")


def run_sync(tenant: str, *, dry_run: bool, override_guard: bool = False, trigger: str = "cli") -> dict[str, Any]:
    from flows.sync_tenant import sync_tenant
    from store.access import audit
    from store.repo import integration_settings

    with explained_errors():
        integration_settings(engine(), tenant)  # the sentence for a missing setup, before Prefect starts
        change = {"dry_run": dry_run, "override_guard": override_guard}
        audit(engine(), tenant=tenant, actor="cli", action="sync_started", new=change)
        return sync_tenant(tenant, dry_run=dry_run, override_guard=override_guard, trigger=trigger)
