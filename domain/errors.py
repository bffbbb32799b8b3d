"""The base of every error whose message is written for a person.

A door (the CLI, the flow's run row and artifacts, later the admin API) shows such a message as it is:
one sentence, naming the tenant and the cause, never a secret or a personal attribute. Anything else is
a bug, and a door says only its type.
"""

from __future__ import annotations


class ExplainedError(Exception):
    """An error whose message is one sentence for the person who asked: no secret, no personal data."""


def describe(exc: BaseException) -> str:
    """What a run row, an artifact or a door may say about a failure."""
    if isinstance(exc, ExplainedError):
        return str(exc)
    return (
        f"unexpected {type(exc).__name__}; the flow run's log has the traceback "
        "(the Prefect UI, or the terminal of `provision sync`)"
    )


class NotFoundError(ExplainedError):
    """What was asked for does not exist (or is not the asker's to see: a door answers both alike)."""


class ConflictError(ExplainedError):
    """The request is well formed but clashes with the current state (already exists, busy, not connected)."""


class UnavailableError(ExplainedError):
    """A service the request needs (the Prefect server) cannot be reached now; what was saved stays saved."""
