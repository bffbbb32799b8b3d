"""What a source id may be (a source user's, a group's, a parent's), and how any id is shown to a person.

The id columns hold 200 characters, and PostgreSQL refuses a NUL byte in text: an id breaking either rule
failed every load until the source changed (SQLite took it). So such ids are caught at the edge
(sources/normalize.py): a source user is quarantined with one of the reasons below, a group is dropped. The
rules are the names' (domain/names.py): no C0 or C1 control character (a NUL byte, an escape sequence, a
line break), at most 200 characters.

Ids are shown escaped wherever they are shown, since a valid id may still hold `|` or a backtick, and rows
stored before ids were checked may hold anything: `shown_id` for a terminal, `markdown_text` for an artifact.
"""

from __future__ import annotations

import re

from domain.names import CONTROL_CHARACTERS

MAX_ID_LENGTH = 200  # employees.source_user_id, source_groups.group_id and parent_id, run_changes.source_user_id

# Why an id is refused, worded as a sync's report words it. They quote nothing of the id itself.
ID_TOO_LONG = f"id longer than {MAX_ID_LENGTH} characters"
ID_HAS_CONTROL_CHARACTERS = "id contains control characters"

_CONTROL = re.compile(CONTROL_CHARACTERS)
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# CommonMark's backslash escapes for what would end a table cell, open code or emphasis, a link or HTML.
_MARKDOWN = re.compile(r"[\\|`*~\[\]<>]")


def id_problem(value: str) -> str | None:
    """Why a source id may not be used (a sync's quarantine reason), or None when it may.

    sources/normalize.py applies the same two rules to whole columns at once, with these constants.
    """
    if _CONTROL.search(value):
        return ID_HAS_CONTROL_CHARACTERS
    if len(value) > MAX_ID_LENGTH:
        return ID_TOO_LONG
    return None


def shown_id(value: str) -> str:
    """`value` fit for one line of a terminal: control characters as escapes (`\\x1b`, `\\n`), and an id
    longer than the columns hold cut there, with its length."""
    shown = _CONTROL.sub(lambda m: _ESCAPES.get(m[0], f"\\x{ord(m[0]):02x}"), value[:MAX_ID_LENGTH])
    return shown if len(value) <= MAX_ID_LENGTH else f"{shown}… ({len(value)} characters)"


def markdown_text(value: object) -> str:
    """`value` as text of a markdown table cell or line: shown as `shown_id` shows it, with every character
    that markdown would read as structure (`|`, backticks, `*`, `[`, `<`, ...) backslash-escaped. (An
    underscore inside a word, as in `non_matching`, is no emphasis in CommonMark: left as it is.)"""
    return _MARKDOWN.sub(lambda m: "\\" + m[0], shown_id(str(value)))
