"""What a person's name may be: one set of rules for source users (a sync quarantines the rest) and for
employees created by hand (refused with one sentence), so that neither door stores what the other refuses.
"""

from __future__ import annotations

import re

from domain.errors import ExplainedError

MAX_NAME_LENGTH = 200  # the employee table's name columns; a longer name is a broken record, not a person
# C0 and C1 control characters (a NUL byte, an escape sequence, a line break inside a name): never stored.
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f-\x9f]"
_CONTROL = re.compile(CONTROL_CHARACTERS)

# Why a name is refused, worded as a sync's report words it. They quote nothing of the name itself.
NAME_TOO_LONG = f"name longer than {MAX_NAME_LENGTH} characters"
NAME_HAS_CONTROL_CHARACTERS = "name contains control characters"


class InvalidName(ExplainedError):
    """A name given by hand that a sync would not store either."""


def name_problem(name: str) -> str | None:
    """Why a trimmed name may not be stored (a sync's quarantine reason), or None when it may.

    sources/normalize.py applies the same two rules to whole columns at once, with these constants;
    tests/test_cli_commands.py holds the two to the same verdicts.
    """
    if _CONTROL.search(name):
        return NAME_HAS_CONTROL_CHARACTERS
    if len(name) > MAX_NAME_LENGTH:
        return NAME_TOO_LONG
    return None


def person_name(value: str, what: str) -> str:
    """`value` trimmed as a sync trims a source user's name; one sentence naming `what` (e.g. "first name")
    when it is empty or when a sync would quarantine it."""
    name = value.strip()
    if not name:
        raise InvalidName(f"The {what} is empty.")
    problem = name_problem(name)
    if problem is not None:
        raise InvalidName(f"The {what} is not accepted: {problem}.")
    return name
