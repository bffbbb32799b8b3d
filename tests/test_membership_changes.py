"""Who joins and leaves which group (tasks/memberships.py `membership_changes`), against a plain reading of the
rule in sets: the same answer whether the (employee, group) pairs are joined on one integer key or, for employee
ids too large for one, on the pair itself."""

from __future__ import annotations

import random

import polars as pl
import pytest

from schemas.plan import MEMBERSHIP_CHANGE_SCHEMA
from tasks.match import UNJUDGED
from tasks.memberships import membership_changes

ACTIONS = ["unchanged", "updated", "created", "deleted", "kept", "conflict", "non_matching", "terminated"]


def _case(seed: int, id_base: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rng = random.Random(seed)
    groups = [f"g{n}" for n in range(7)]
    rows = []
    for n in range(40):
        action = rng.choice(ACTIONS)
        employee = None if action == "created" else id_base + n
        linked = None if action != "created" and rng.random() < 0.15 else f"u{n}"
        rows.append((employee, linked, action))
    plan = pl.DataFrame(
        rows, schema={"employee_id": pl.Int64(), "source_user_id": pl.String(), "action": pl.String()}, orient="row"
    )
    wanted = pl.DataFrame(
        sorted({(f"u{rng.randrange(45)}", rng.choice(groups)) for _ in range(80)}),
        schema={"source_user_id": pl.String(), "group_id": pl.String()},
        orient="row",
    )
    current = pl.DataFrame(
        sorted({(id_base + rng.randrange(45), rng.choice([*groups, "gone"])) for _ in range(70)}),
        schema={"employee_id": pl.Int64(), "group_id": pl.String()},
        orient="row",
    )
    return plan, wanted, current


def _by_the_rule(plan: pl.DataFrame, wanted: pl.DataFrame, current: pl.DataFrame) -> set[tuple[object, ...]]:
    """The rule read plainly: an employee that stays (or is created) joins the wanted groups of its source user
    it is not in yet, and leaves the groups it is in that it is not wanted in; unjudged employees keep theirs."""
    rows = plan.rows()
    unjudged = {e for e, _, a in rows if e is not None and a in UNJUDGED}
    staying = [
        (e, u)
        for e, u, a in rows
        if u is not None and (a == "created" or (e is not None and a not in ["deleted", *UNJUDGED]))
    ]
    held = set(current.rows())
    want = {(e, u, g) for e, u in staying for wu, g in wanted.rows() if wu == u}
    joined = {(e, u, g, "joined") for e, u, g in want if (e, g) not in held}
    wanted_pairs = {(e, g) for e, _, g in want if e is not None}
    link = {e: u for e, u, _ in rows if e is not None}
    left = {(e, link.get(e), g, "left") for e, g in held if e not in unjudged and (e, g) not in wanted_pairs}
    return joined | left


@pytest.mark.parametrize("id_base", [1, 2**61], ids=["database ids", "ids too large for one key"])
@pytest.mark.parametrize("seed", range(12))
def test_the_changes_are_those_the_rule_gives(seed: int, id_base: int) -> None:
    plan, wanted, current = _case(seed, id_base)
    changes = membership_changes(plan, wanted, current)
    assert changes.schema == pl.Schema(MEMBERSHIP_CHANGE_SCHEMA)
    assert set(changes.select("employee_id", "source_user_id", "group_id", "action").rows()) == _by_the_rule(
        plan, wanted, current
    )
    assert changes.height == len(_by_the_rule(plan, wanted, current))  # no pair twice
