"""What every `provision` command shares: one sentence for an error, the engine, output, running a sync.

The leaf of `cli/`: the command modules import it, it imports none of them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import typer
from sqlalchemy import Engine
from typer.core import TyperGroup


def fail(message: str, **details: Any) -> NoReturn:
    """One sentence on stderr and exit code 1; with `--json`, also `{"error": sentence, ...details}` on stdout,
    so a script reading stdout gets JSON whether the command worked or not."""
    import sys

    if "--json" in sys.argv[1:]:
        typer.echo(json.dumps({"error": message, **details}, ensure_ascii=False))
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def usage_errors_in_one_line() -> Iterator[None]:
    """Click's usage errors (an unknown option or command, a missing or malformed value) as one `Error:`
    line and exit code 1, like every other refusal, rather than a boxed usage message and exit code 2.

    Typer vendors Click: its exceptions derive from the public `typer.TyperException`."""
    try:
        yield
    except typer.TyperException as exc:
        # Named, not imported, as Typer itself tells it: its vendored Click module is private.
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A command group named without a command: its help is the answer (Rich has printed it already;
            # without Rich it is the message). Nothing asked for was done, so the exit code is 1 all the same.
            if exc.format_message().strip():
                typer.echo(exc.format_message())
            raise typer.Exit(1) from None
        message = " ".join(exc.format_message().split())
        # Typer's "No such command 'shwo'. Did you mean 'show'?" kept as one sentence.
        message = re.sub(r"\. Did you mean (.+)\?$", r" (did you mean \1?)", message).rstrip(".")
        ctx = getattr(exc, "ctx", None)
        fail(f"{message}; see `{ctx.command_path} --help`." if ctx is not None else f"{message}.")


class OneLineUsageErrors(TyperGroup):
    """The `provision` group: every usage error anywhere below it is one line on stderr and exit code 1.

    Both ways into a command pass here: parsing the top level (make_context) and everything below it,
    sub-groups and their commands included (invoke). `typer.testing.CliRunner` goes through them as well."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with usage_errors_in_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with usage_errors_in_one_line():
            return super().invoke(ctx)


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
    """The configured employee database, migrated; one sentence (which URL, what is wrong) when it cannot open."""
    from store.db import DatabaseConfigError, make_engine

    try:
        return make_engine()
    except DatabaseConfigError as exc:
        fail(str(exc))


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


def quiet_prefect(verbose: bool) -> None:
    """A sync from the CLI prints its counts, or one sentence; Prefect's own lines only with `--verbose`
    (warnings and errors always). Only the terminal's handler is quieted: the run's log lines still reach the
    Prefect server, where the run's log shows them (PREFECT_LOGGING_LEVEL would drop them before any handler).
    Set before Prefect is first imported, which reads it then."""
    import os

    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


class _ExplainedWithoutTraceback:
    """A failure written for a person is logged as its sentence, without the traceback (an unexpected one
    keeps its traceback)."""

    def filter(self, record: Any) -> bool:
        from domain.errors import ExplainedError

        if record.exc_info and isinstance(record.exc_info[1], ExplainedError):
            record.exc_info = None
            record.exc_text = None
        return True


def run_sync(
    tenant: str, *, dry_run: bool, override_guard: bool = False, trigger: str = "cli", wait_for_lock: bool = False
) -> dict[str, Any]:
    import logging

    from domain.errors import ExplainedError
    from flows.sync_tenant import sync_tenant, without_heartbeats
    from settings import unified_token
    from store.access import audit
    from store.models import utcnow
    from store.repo import integration_settings

    for logger in (logging.getLogger(), logging.getLogger("prefect")):
        for handler in logger.handlers:
            handler.addFilter(_ExplainedWithoutTraceback())
    with explained_errors():
        integration_settings(engine(), tenant)  # the sentence for a missing setup, before Prefect starts
        unified_token()  # and for a missing token
        change = {"dry_run": dry_run, "override_guard": override_guard}
        audit(engine(), tenant=tenant, actor="cli", action="sync_started", new=change)
        since = utcnow()
        try:
            with interrupts_reported(tenant, since), without_heartbeats():  # the person watching is its heartbeat
                return sync_tenant(
                    tenant, dry_run=dry_run, override_guard=override_guard, trigger=trigger, wait_for_lock=wait_for_lock
                )
        except ExplainedError as exc:  # the run row it left, if it started one
            run = _run_since(tenant, since)
            fail(str(exc), **({"run_id": run["run_id"], "outcome": run["outcome"]} if run else {}))


def _run_since(tenant: str, since: datetime) -> dict[str, Any] | None:
    """The tenant's newest run if it started at `since` or later (this command's), else None."""
    from store.repo import list_runs

    runs = list_runs(engine(), tenant, limit=1)
    return runs[0] if runs and datetime.fromisoformat(runs[0]["started_at"]) >= since else None


@contextmanager
def interrupts_reported(tenant: str, since: datetime) -> Iterator[None]:
    """Ctrl-C during a sync ends the command within seconds, with one line saying whether the load committed.

    The interrupt unwinds the flow as usual (an open load rolls back; the flow writes its run row). A watcher
    thread then waits for that row and ends the process, rather than letting Prefect spend minutes reporting
    to a temporary server that the same Ctrl-C has stopped."""
    import signal

    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: Any) -> None:
        threading.Thread(target=_report_interrupt, args=(tenant, since), daemon=True).start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        _report_interrupt(tenant, since, wait=0)
    finally:
        signal.signal(signal.SIGINT, previous)


_reported = threading.Lock()


def _report_interrupt(tenant: str, since: datetime, wait: float = 15) -> None:
    """Wait (at most `wait` s) for the interrupted run's row to say how it ended; print that; exit 130."""
    import os
    import sys
    import time

    deadline = time.monotonic() + wait
    while True:
        last = _run_since(tenant, since)
        if last is None or last["outcome"] not in ("queued", "running") or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if not _reported.acquire(blocking=False):
        return  # the other thread is saying it
    if last is None:
        line = "Interrupted before the run started: nothing was written."
    elif last["outcome"] == "succeeded":
        line = f"Interrupted after the load committed: run {last['run_id']} succeeded; the employee table is updated."
    elif last["outcome"] in ("queued", "running"):
        line = f"Interrupted: run {last['run_id']} did not record how it ended; see `provision run show` for it."
    else:
        line = f"Interrupted: run {last['run_id']} {last['outcome']}; {last['error'] or 'nothing was written.'}"
    typer.echo(line, err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)  # 128 + SIGINT, as shells report an interrupted command
