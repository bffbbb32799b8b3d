"""Deterministic fake HRIS tenants in Unified.to's own wire format (HrisEmployee / HrisGroup objects).

`generate_dataset(users, seed)` returns `{"employees": [...], "groups": [...]}`. The records carry more
than the pipeline needs (titles, phones, birthdays, ...) on purpose, so that the client's dropping of
unneeded fields is exercised. The default tenant has no nested-group cycle; cycles and other named
edge cases live in `simulator.datasets`.
"""

from __future__ import annotations

import gc
import math
import random
import unicodedata
from collections.abc import Sequence
from typing import Any

# Names with umlauts, accents, apostrophes and non-Latin-1 letters, so that ASCII folding,
# NFC normalization and case folding are exercised by every generated tenant.
FIRST_NAMES = (
    "Jürgen", "Günther", "Jörg", "Björn", "Bärbel", "Käthe", "Sören", "Zoë", "José", "Søren", "François",
    "Agnès", "Hélène", "Łukasz", "Małgorzata", "Dragoş", "Çağla", "Ayşe", "Nguyễn Văn", "Thảo", "Siobhán",
    "Seán", "Åsa", "Ørjan", "Anna", "Lukas", "Maximilian", "Sophie", "Marie", "Leon", "Paul", "Emma",
    "Mia", "Hannah", "Felix", "Jonas", "Laura", "Julia", "Katharina", "Stefan", "Thomas", "Sabine",
    "Andreas", "Michael", "Christian", "Petra", "Monika", "Ahmet", "Mehmet", "Fatma", "Olga", "Dmitri",
    "Priya", "Wei", "Yuki", "Kwame", "Chiara", "Giulia", "Matteo", "Inês", "João", "Noémie", "Renée",
    "Zoé", "Ines", "Elif", "Mateusz", "Tomáš", "Žofie", "Dóra", "Ágnes", "Jan-Erik", "Anne-Sophie",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann",
    "Krüger", "Hofmann", "Köhler", "Groß", "Jäger", "Günther", "Böhm", "Straße", "Öztürk", "Yılmaz",
    "Nguyễn", "Trần", "O'Brien", "O'Connor", "D'Angelo", "García", "Fernández", "Pérez", "Núñez",
    "Søndergaard", "Kjærsgaard", "Åberg", "Lindström", "Dvořák", "Nowak", "Wiśniewski", "Kowalczyk",
    "Dubois", "Lefèvre", "Bélanger", "Rossi", "Esposito", "Silva", "Gonçalves", "van der Berg",
    "de Vries", "von Hohenstein", "Smith", "Johnson", "Brown", "Kim", "Chen", "Wang", "Patel", "Singh",
    "Kowalski", "Horváth", "Papadopoulos", "Ivanova", "Müller-Lüdenscheidt", "Schmitt-Weißenfels",
)  # fmt: skip
DEPARTMENTS = (
    "Engineering", "Vertrieb", "Marketing", "Finanzen", "Personal", "Kundenservice", "Einkauf", "Logistik",
    "Recht", "IT-Betrieb", "Produktion", "Qualitätssicherung", "Forschung & Entwicklung", "Controlling",
    "Facility Management", "Produktmanagement", "Datenschutz", "Unternehmenskommunikation",
)  # fmt: skip
TEAMS = (
    "Platform", "Payments", "Mobile", "Web", "Data", "Security", "Nord", "Süd", "West", "Ost", "DACH",
    "Benelux", "Nordics", "Key Accounts", "Onboarding", "Payroll", "Recruiting", "Support 1st Level",
    "Support 2nd Level", "Lager", "Versand", "Tax", "Audit", "Design", "Research", "Infrastruktur",
)  # fmt: skip
CITIES = ("Berlin", "München", "Hamburg", "Köln", "Düsseldorf", "Zürich", "Wien", "Lisboa", "Kraków")
TITLES = ("Sachbearbeiter:in", "Senior Engineer", "Teamleiter:in", "Werkstudent:in", "Account Manager",
          "Head of Sales", "Buchhalter:in", "Specialist", "Consultant", "Product Owner")  # fmt: skip
EMPLOYMENT_TYPES = ("FULL_TIME", "FULL_TIME", "FULL_TIME", "FULL_TIME", "PART_TIME", "INTERN")

WORK_DOMAIN = "firma.example"
HOME_DOMAINS = ("privatmail.example", "zuhause.example", "freemail.example")

# Shares of the generated tenant (approximate; the draw is per user).
INACTIVE_SHARE = 0.03
CONTRACTOR_SHARE = 0.08
HOME_EMAIL_SHARE = 0.35  # users that also have a private address ...
HOME_FIRST_SHARE = 0.5  # ... of which this share lists it before the work address
OTHER_ONLY_SHARE = 0.01  # users whose only address is typed OTHER
GROUPS_ON_EMPLOYEE_SHARE = 0.3  # users whose record also lists their team in employee.groups[]
DEPARTMENT_MEMBER_SHARE = 0.02  # users who are direct members of their department, not a team

_GERMAN_FOLD = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ø": "o", "æ": "ae", "å": "a", "ł": "l", "đ": "d", "ı": "i"}
)


def ascii_fold(name: str) -> str:
    """`Jürgen Müller-Lüdenscheidt` -> `juergen.mueller-luedenscheidt`: the local-part style of a work email."""
    lowered = name.lower().translate(_GERMAN_FOLD)
    decomposed = unicodedata.normalize("NFKD", lowered)
    out = []
    for ch in decomposed:
        if ch.isascii() and (ch.isalnum() or ch == "-"):
            out.append(ch)
        elif ch == " ":
            out.append(".")
        # apostrophes, combining marks and anything else are dropped
    return "".join(out).strip(".-") or "user"


def _id(prefix: str, n: int, salt: int) -> str:
    # An odd multiplier is a bijection modulo 2**48, so ids are unique yet look opaque, like real ones.
    return f"{prefix}{(n * 0x9E3779B97F4B + salt) % (1 << 48):012x}"


def _timestamps(rng: random.Random, year_from: int, year_to: int, *, n: int = 1024) -> list[str]:
    # A pool to draw from: formatting a fresh timestamp per field per user is most of the generation time.
    return [
        f"{rng.randint(year_from, year_to)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        f"T{rng.randint(6, 18):02d}:{rng.randint(0, 59):02d}:00Z"
        for _ in range(n)
    ]


def generate_dataset(users: int, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """A deterministic tenant of `users` employees with nested groups (root > departments > teams)."""
    if users < 0:
        raise ValueError("users must be >= 0")
    # Millions of small dicts and lists trigger the cyclic GC over and over although nothing here is
    # garbage; pausing it halves generation time at 100k users.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(users, seed)
    finally:
        if gc_was_enabled:
            gc.enable()


def _generate(users: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)
    salt = rng.getrandbits(48)

    # Group counts scale with the tenant: ~sqrt departments, teams of ~25.
    n_departments = max(2, round(math.sqrt(users) / 2)) if users else 1
    n_teams = max(n_departments, users // 25) if users else 0
    root_id = _id("grp_", 0, salt)
    groups: list[dict[str, Any]] = [
        {
            "id": root_id,
            "name": "All Staff",
            "type": "GROUP",
            "description": "Alle Mitarbeitenden",
            "user_ids": [],
            "is_active": True,
            "created_at": "2019-01-01T00:00:00Z",
        }
    ]
    departments: list[dict[str, Any]] = []
    for d in range(n_departments):
        base = DEPARTMENTS[d % len(DEPARTMENTS)]
        name = base if d < len(DEPARTMENTS) else f"{base} {CITIES[(d // len(DEPARTMENTS)) % len(CITIES)]} {d}"
        departments.append(
            {
                "id": _id("grp_", 1 + d, salt),
                "name": name,
                "type": "DEPARTMENT",
                "parent_id": root_id,
                "user_ids": [],
                "manager_ids": [],
                "is_active": True,
            }
        )
    teams: list[dict[str, Any]] = []
    for t in range(n_teams):
        dept = departments[t % n_departments]
        teams.append(
            {
                "id": _id("grp_", 1 + n_departments + t, salt),
                "name": f"{dept['name']} – {TEAMS[t % len(TEAMS)]} {t // len(TEAMS) + 1}",
                "type": "TEAM",
                "parent_id": dept["id"],
                "user_ids": [],
                "is_active": True,
            }
        )
    groups.extend(departments)
    groups.extend(teams)

    employees: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    fold_cache: dict[str, str] = {}
    rand = rng.random

    def choice(seq: Sequence[str]) -> str:
        # random.choice costs ~3x this; it is most of the generation time at 100k users.
        return seq[int(rand() * len(seq))]

    created, updated, hired, terminated = (
        _timestamps(rng, 2015, 2023),
        _timestamps(rng, 2024, 2025),
        _timestamps(rng, 2010, 2024),
        _timestamps(rng, 2024, 2025),
    )
    births = [d[:10] for d in _timestamps(rng, 1960, 2004)]
    for i in range(users):
        first = choice(FIRST_NAMES)
        last = choice(LAST_NAMES)
        local = fold_cache.get(first + "\x00" + last)
        if local is None:
            local = f"{ascii_fold(first)}.{ascii_fold(last)}"
            fold_cache[first + "\x00" + last] = local
        n = taken.get(local, 0) + 1
        taken[local] = n
        address = f"{local}{n if n > 1 else ''}@{WORK_DOMAIN}"
        if rand() < 0.05:  # some sources keep the capitalisation people typed
            address = address[0].upper() + address[1:]
        r = rand()
        if r < OTHER_ONLY_SHARE:
            emails = [{"email": address, "type": "OTHER"}]
        elif r < OTHER_ONLY_SHARE + HOME_EMAIL_SHARE:
            home = {"email": f"{local.replace('.', '_')}{i % 97}@{choice(HOME_DOMAINS)}", "type": "HOME"}
            work = {"email": address, "type": "WORK"}
            emails = [home, work] if rand() < HOME_FIRST_SHARE else [work, home]
        else:
            emails = [{"email": address, "type": "WORK"}]
        emp_id = _id("emp_", i, salt)
        inactive = rand() < INACTIVE_SHARE
        record: dict[str, Any] = {
            "id": emp_id,
            "created_at": choice(created),
            "updated_at": choice(updated),
            "name": f"{first} {last}",
            "first_name": first,
            "last_name": last,
            "emails": emails,
            "employment_status": "INACTIVE" if inactive else "ACTIVE",
            "employment_type": "CONTRACTOR" if rand() < CONTRACTOR_SHARE else choice(EMPLOYMENT_TYPES),
            "employee_number": f"E-{10000 + i}",
            "title": choice(TITLES),
            "hired_at": choice(hired),
            "date_of_birth": choice(births),
            "gender": choice(("FEMALE", "MALE", "NON_BINARY")),
            "telephones": [{"telephone": f"+49 30 {1000000 + int(rand() * 9000000)}", "type": "WORK"}],
            "address": {"city": choice(CITIES), "country_code": "DE"},
            "employee_roles": ["EMPLOYEE"],
        }
        if inactive:
            record["terminated_at"] = choice(terminated)
            record["termination_reason"] = "Resignation"
        if rand() < 0.2:
            record["telephones"].append({"telephone": f"+49 170 {1000000 + int(rand() * 9000000)}", "type": "MOBILE"})
        if n_teams and rand() >= DEPARTMENT_MEMBER_SHARE:
            team = teams[int(rand() * n_teams)]
            team["user_ids"].append(emp_id)
            if rand() < GROUPS_ON_EMPLOYEE_SHARE:
                record["groups"] = [{"id": team["id"], "name": team["name"], "type": "TEAM"}]
        else:
            dept = departments[int(rand() * n_departments)]
            dept["user_ids"].append(emp_id)
            dept["manager_ids"].append(emp_id)
        employees.append(record)
    return {"employees": employees, "groups": groups}
