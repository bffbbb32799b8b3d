"""Which addresses are one mailbox (issue 14, item 4): matching compares NFC + lower-case, never a folding that
turns one person's mailbox into another's (`ſupport@` into `support@`, `oﬃce@` into `office@`, `straße@` into
`strasse@`); a local part holding compatibility characters is quarantined (and refused by hand), and the stored
forms are recomputed by a migration that cannot make two employees collide.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, select, text

from domain.emails import EMAIL_HAS_COMPATIBILITY_CHARACTERS, email_problem, normalize_email
from sources.normalize import normalize
from store.db import alembic_config
from store.models import Employee
from store.repo import StoreError, add_employee, add_tenant
from tests.runs import sync_snapshot
from tests.tables import table
from tests.wire import person

REVISION = "0009"  # the migration that recomputes employees.email_norm


def casefolded(address: str) -> str:
    """The form stored before this change (NFC, case-folded, NFC again): what the migration starts from."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", address).casefold())


# ---- the normal form ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("\u017fupport@acme.example", "support@acme.example"),  # long s
        ("o\ufb03ce@acme.example", "office@acme.example"),  # the ffi ligature
        ("stra\u00dfe@acme.example", "strasse@acme.example"),  # sharp s: another mailbox, not a spelling
        ("\uff53upport@acme.example", "support@acme.example"),  # fullwidth s
        ("\u1e9ee@acme.example", "sse@acme.example"),  # capital sharp s
    ],
)
def test_different_mailboxes_keep_different_normal_forms(one: str, other: str) -> None:
    assert normalize_email(one) != normalize_email(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Anna.Muster@ACME.example", "anna.muster@acme.example"),
        ("Ju\u0308rgen.MU\u0308LLER@Acme.example", "j\u00fcrgen.m\u00fcller@acme.example"),  # decomposed, capitals
        ("STRA\u00dfE@acme.example", "stra\u00dfe@acme.example"),
        ("\u00c6BLE@acme.example", "\u00e6ble@acme.example"),
        ("j\u00fcrgen@M\u00dcLLER.example", "j\u00fcrgen@m\u00fcller.example"),
    ],
)
def test_the_normal_form_still_ignores_case_and_unicode_composition(one: str, other: str) -> None:
    assert normalize_email(one) == normalize_email(other)


def test_the_new_form_is_finer_than_the_stored_one_for_every_code_point() -> None:
    # why: the migration recomputes every stored form; it cannot make two employees collide when
    # casefolded(normalize_email(x)) == casefolded(x) for every x: two addresses with one new form had one
    # old form too, and the old forms were unique per tenant.
    broken = []
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        for address in (chr(code), f"a{chr(code)}@b", f"{chr(code)}\u0301"):
            if casefolded(normalize_email(address)) != casefolded(address):
                broken.append(hex(code))
    assert broken == []


@settings(max_examples=500, deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_the_new_form_is_finer_than_the_stored_one_for_any_text(address: str) -> None:
    assert casefolded(normalize_email(address)) == casefolded(address)
    assert normalize_email(normalize_email(address)) == normalize_email(address)


# ---- source users -------------------------------------------------------------------------------


def _user(email: str) -> dict[str, object]:
    return normalize([person("u1", email)], []).users.row(0, named=True)


@pytest.mark.parametrize(
    "email",
    ["\u017fupport@acme.example", "o\ufb03ce@acme.example", "\uff53upport@acme.example", "x\u00b2@acme.example"],
)
def test_a_source_user_whose_local_part_has_compatibility_characters_is_quarantined(email: str) -> None:
    row = _user(email)
    assert row["problem"] == EMAIL_HAS_COMPATIBILITY_CHARACTERS
    assert email_problem(email) == EMAIL_HAS_COMPATIBILITY_CHARACTERS
    assert "acme" not in EMAIL_HAS_COMPATIBILITY_CHARACTERS  # the reason quotes nothing of the address


@pytest.mark.parametrize(
    ("email", "norm"),
    [
        ("stra\u00dfe@acme.example", "stra\u00dfe@acme.example"),
        ("Ju\u0308rgen@acme.example", "j\u00fcrgen@acme.example"),  # decomposed: canonically the same, tolerated
        ("\U0001f680@acme.example", "\U0001f680@acme.example"),
        ("anna@\uff41cme.example", "anna@\uff41cme.example"),  # the domain is not the local part
    ],
)
def test_a_source_user_with_a_plain_unicode_local_part_is_kept_with_its_normal_form(email: str, norm: str) -> None:
    row = _user(email)
    assert row["problem"] is None
    assert row["email_norm"] == norm == normalize_email(email)


# ---- a sync, on both databases --------------------------------------------------------------------


@pytest.fixture
def tenant(engine: Engine) -> str:
    add_tenant(engine, "acme")
    return "acme"


def test_a_look_alike_source_user_never_takes_over_another_persons_employee(engine: Engine, tenant: str) -> None:
    add_employee(engine, tenant, email="support@acme.example", first_name="Support", last_name="Team")
    add_employee(engine, tenant, email="strasse@acme.example", first_name="Hans", last_name="Strasse")
    good = [person(f"g{i}", f"good{i}@acme.example") for i in range(4)]
    source = [
        *good,
        person("u-long-s", "\u017fupport@acme.example", "Eve", "Mallory"),
        person("u-sharp-s", "stra\u00dfe@acme.example", "Grete", "Stra\u00dfe"),
    ]
    _run_id, planned = sync_snapshot(engine, tenant, normalize(source, []))
    rows = table(engine, tenant)
    # Neither hand-made employee was linked or had its email overwritten; Grete is a person of her own.
    assert {email: rows[email] for email in rows if not email.startswith("good")} == {
        "support@acme.example": ("Support", "non_matching", None),
        "strasse@acme.example": ("Hans", "non_matching", None),
        "stra\u00dfe@acme.example": ("Grete", "synced", "u-sharp-s"),
    }
    assert dict(planned.quarantine.select("source_user_id", "reason").iter_rows()) == {
        "u-long-s": EMAIL_HAS_COMPATIBILITY_CHARACTERS
    }


def test_employee_add_refuses_a_local_part_a_sync_would_quarantine(engine: Engine, tenant: str) -> None:
    with pytest.raises(StoreError) as refusal:
        add_employee(engine, tenant, email="\u017fupport@acme.example", first_name="Eve", last_name="M")
    assert str(refusal.value) == f"The email is not accepted: {EMAIL_HAS_COMPATIBILITY_CHARACTERS}."
    assert table(engine, tenant) == {}


def test_employee_add_keeps_sharp_s_and_ss_apart(engine: Engine, tenant: str) -> None:
    add_employee(engine, tenant, email="strasse@acme.example", first_name="Hans", last_name="Strasse")
    add_employee(engine, tenant, email="Stra\u00dfe@acme.example", first_name="Grete", last_name="Stra\u00dfe")
    with pytest.raises(StoreError, match="already has an employee with that email"):
        add_employee(engine, tenant, email="STRA\u00dfE@ACME.example", first_name="G", last_name="S")
    assert set(table(engine, tenant)) == {"strasse@acme.example", "Stra\u00dfe@acme.example"}


# ---- the migration ------------------------------------------------------------------------------


@pytest.fixture
def before_migration(blank_database_url: str) -> Iterator[str]:
    """A database migrated up to the revision before this one."""
    config = alembic_config(blank_database_url)
    previous = ScriptDirectory.from_config(config).get_revision(REVISION).down_revision
    assert isinstance(previous, str)
    command.upgrade(config, previous)
    yield blank_database_url


STORED = [  # (id, tenant, email) with the form stored before: casefolded
    (1, "acme", "Anna@ACME.example"),
    (2, "acme", "Stra\u00dfe@acme.example"),
    (3, "acme", "Ju\u0308rgen@M\u00dcLLER.example"),
    (4, "acme", "\u01c4emal@acme.example"),  # DŽ: case-folds and lower-cases alike
    (5, "globex", "STRASSE@acme.example"),  # another tenant: may hold what acme holds
]


def _plain_engine(url: str) -> Engine:
    """An engine that leaves the schema where it is (make_engine would migrate it to the newest)."""
    return create_engine(url)


def _insert_old_rows(url: str) -> None:
    engine = _plain_engine(url)
    with engine.begin() as conn:
        for tenant in ("acme", "globex"):
            conn.execute(
                text("INSERT INTO tenants (id, name, created_at) VALUES (:t, :t, CURRENT_TIMESTAMP)"), {"t": tenant}
            )
        for employee_id, tenant, email in STORED:
            conn.execute(
                text(
                    "INSERT INTO employees (id, tenant_id, email, email_norm, status, created_at, updated_at) "
                    "VALUES (:id, :t, :e, :n, 'unmanaged', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": employee_id, "t": tenant, "e": email, "n": casefolded(email)},
            )
    engine.dispose()


def _stored(url: str) -> list[tuple[int, str, str]]:
    engine = _plain_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Employee.id, Employee.email, Employee.email_norm).order_by(Employee.id)).all()
    engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_the_migration_recomputes_every_stored_form(before_migration: str) -> None:
    _insert_old_rows(before_migration)
    command.upgrade(alembic_config(before_migration), REVISION)
    stored = {email: norm for _id, email, norm in _stored(before_migration)}
    assert stored == {email: normalize_email(email) for _id, _tenant, email in STORED}
    assert stored["Stra\u00dfe@acme.example"] == "stra\u00dfe@acme.example"  # no longer "strasse@..."


def test_the_migration_refuses_forms_that_would_collide_and_changes_nothing(before_migration: str) -> None:
    # Unreachable from forms this product stored (the tests above hold the new form finer), but a database
    # edited by hand may hold anything: the upgrade then stops before writing and names the employees.
    _insert_old_rows(before_migration)
    engine = _plain_engine(before_migration)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO employees (id, tenant_id, email, email_norm, status, created_at, updated_at) "
                "VALUES (6, 'acme', 'ANNA@acme.example', 'edited-by-hand', 'unmanaged', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    before = _stored(before_migration)
    with pytest.raises(RuntimeError, match=r"tenant 'acme': employees 1 and 6"):
        command.upgrade(alembic_config(before_migration), REVISION)
    assert _stored(before_migration) == before
