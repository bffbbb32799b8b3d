"""Deterministic fake HRIS tenants in Unified.to's own wire format (HrisEmployee / HrisGroup objects).

`generate_dataset(users, seed)` returns `{"employees": [...], "groups": [...]}`. The records carry more
than the pipeline needs (titles, phones, birthdays, ...) on purpose, so that the client's dropping of
unneeded fields is exercised. The default tenant has no nested-group cycle; cycles and other named
edge cases live in `simulator.datasets`.

`provider` picks the shape a provider arrives in through Unified.to (simulator.datasets says which parts
of each are UNCONFIRMED upstream); the same `(users, seed, provider)` always gives the same tenant:
- `"entra"` (the default): the tenant this module has always generated, byte for byte, because many tests
  and benchmarks are written against it: groups listed with `user_ids`, root > departments > teams by
  `parent_id`, `emp_`/`grp_` ids, 1 % of users with only an OTHER address, 3 % INACTIVE with a past
  `terminated_at`. It is looser than Entra's real shape in two ways: about 30 % of the employees also
  carry their team in `groups[]`, and groups are typed DEPARTMENT/TEAM. `provider_dataset("entra")` in
  simulator.datasets has the strict shape (GUIDs, no `groups[]`, guests, users without any email).
- `"personio"`: numeric-string ids; no group list upstream, so the dataset says `"provider": "personio"`
  and `/hris/group` answers 501 unless `group_endpoint` says otherwise; each employee carries its
  department, team and office in `groups[]` (types DEPARTMENT, TEAM, BRANCH; no nesting). The dataset's
  `groups` is the listing `listed_groups` builds from them (served only with `group_endpoint="listed"`).
  Leavers are INACTIVE with a past `terminated_at`; a few ACTIVE employees carry a future one.
- `"google"`: 21-digit numeric-string ids for users and groups; groups (all type GROUP) listed with
  `user_ids`, nested by `parent_id`; suspended or archived users INACTIVE (no `terminated_at`); one WORK
  email each; no `groups[]` unless `embedded_groups=True`.
"""

from __future__ import annotations

import gc
import math
import random
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from simulator.source import group_endpoint_of, provider_of

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


def generate_dataset(
    users: int,
    seed: int = 0,
    provider: str = "entra",
    *,
    embedded_groups: bool = False,
    group_endpoint: str | None = None,
) -> dict[str, Any]:
    """A deterministic tenant of `users` employees in `provider`'s shape (see the module's docstring).

    `embedded_groups` (google only) also lists each user's direct groups in `groups[]`, the other shape
    Google may plausibly arrive in. `group_endpoint` ("listed", "unsupported", "empty") is written into
    the dataset, so that a file says how its `/hris/group` answers; None leaves it to the provider's
    default. An unknown provider or group endpoint is a ValueError.
    """
    if users < 0:
        raise ValueError("users must be >= 0")
    provider = provider_of(provider)
    if embedded_groups and provider != "google":
        raise ValueError(
            f"embedded_groups applies to the google shape only; {provider}'s generated employees "
            + ("always carry their groups." if provider == "personio" else "keep today's shape.")
        )
    endpoint = None if group_endpoint is None else group_endpoint_of(group_endpoint)
    # Millions of small dicts and lists trigger the cyclic GC over and over although nothing here is
    # garbage; pausing it halves generation time at 100k users.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        dataset: dict[str, Any]
        if provider == "personio":
            dataset = _generate_personio(users, seed)
        elif provider == "google":
            dataset = _generate_google(users, seed, embedded_groups=embedded_groups)
        else:
            dataset = _generate(users, seed)  # no "provider" key: entra is the default, the output stays as it was
        if endpoint is not None:
            dataset["group_endpoint"] = endpoint
        return dataset
    finally:
        if gc_was_enabled:
            gc.enable()


def listed_groups(employees: Iterable[Any]) -> list[dict[str, Any]]:
    """The group listing a provider without one (Personio) yields from its employees' `groups[]`: each id
    once, in order of first appearance, with the name and type it first had; no `user_ids`, since the
    provider lists no memberships. Records and embedded groups that are not objects with a string id are
    skipped."""
    seen: dict[str, dict[str, Any]] = {}
    for employee in employees:
        embedded = employee.get("groups") if isinstance(employee, dict) else None
        for group in embedded if isinstance(embedded, list) else []:
            if isinstance(group, dict) and isinstance(group.get("id"), str) and group["id"] not in seen:
                seen[group["id"]] = {k: group[k] for k in ("id", "name", "type") if k in group}
    return list(seen.values())


def _group_counts(users: int) -> tuple[int, int]:
    """Departments and teams of a tenant of `users`: ~sqrt departments, teams of ~25 (as `_generate`)."""
    n_departments = max(2, round(math.sqrt(users) / 2)) if users else 1
    n_teams = max(n_departments, users // 25) if users else 0
    return n_departments, n_teams


def _numbered(names: Sequence[str], n: int) -> str:
    """The `n`th name, with a round number once the names are used up: "Platform", ..., "Platform 2"."""
    base = names[n % len(names)]
    return base if n < len(names) else f"{base} {n // len(names) + 1}"


def _dates(rng: random.Random, year_from: int, year_to: int, *, n: int = 256) -> list[str]:
    # A day, as an HR system keeps an end date: midnight UTC.
    return [
        f"{rng.randint(year_from, year_to)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00Z"
        for _ in range(n)
    ]


# Personio's shares (approximate; the draw is per employee).
LEAVER_SHARE = 0.03  # INACTIVE, with a past terminated_at
PLANNED_LEAVE_SHARE = 0.01  # ACTIVE, with a future terminated_at
NO_TEAM_SHARE = 0.15  # a department and an office, no team
NO_GROUPS_SHARE = 0.01  # nothing in groups[] (a new hire not yet placed)
# Past and future end dates are fixed years, not drawn around today, so that a seed gives the same tenant
# on every day; the future ones stay in the future for years.
PAST_END_YEARS = (2023, 2025)
FUTURE_END_YEARS = (2031, 2033)


def _generate_personio(users: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    rand = rng.random

    def choice(seq: Sequence[str]) -> str:
        return seq[int(rand() * len(seq))]

    n_departments, n_teams = _group_counts(users)
    n_offices = min(len(CITIES), 1 + users // 50)
    # Department ids 1001..., teams 2001..., offices 3001... (more digits once a kind has 1000 or more).
    block = 10 ** max(3, len(str(max(n_departments, n_teams, n_offices) + 1)))
    departments = [
        {"id": str(block + 1 + d), "name": _numbered(DEPARTMENTS, d), "type": "DEPARTMENT"}
        for d in range(n_departments)
    ]
    teams = [{"id": str(2 * block + 1 + t), "name": _numbered(TEAMS, t), "type": "TEAM"} for t in range(n_teams)]
    offices = [{"id": str(3 * block + 1 + o), "name": CITIES[o], "type": "BRANCH"} for o in range(n_offices)]

    created, updated, hired = _timestamps(rng, 2015, 2023), _timestamps(rng, 2024, 2025), _timestamps(rng, 2010, 2024)
    births = [d[:10] for d in _timestamps(rng, 1960, 2004)]
    past_ends, future_ends = _dates(rng, *PAST_END_YEARS), _dates(rng, *FUTURE_END_YEARS)
    employees: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    next_id = rng.randint(10_000, 89_999)  # Personio's ids are its personnel numbers, e.g. 83752
    for _ in range(users):
        next_id += 1 + int(rand() * 3)  # ascending, with the gaps of deleted records
        emp_id = str(next_id)
        first, last = choice(FIRST_NAMES), choice(LAST_NAMES)
        local = f"{ascii_fold(first)}.{ascii_fold(last)}"
        n = taken[local] = taken.get(local, 0) + 1
        record: dict[str, Any] = {
            "id": emp_id,
            "created_at": choice(created),
            "updated_at": choice(updated),
            "name": f"{first} {last}",
            "first_name": first,
            "last_name": last,
            "emails": [{"email": f"{local}{n if n > 1 else ''}@{WORK_DOMAIN}", "type": "WORK"}],
            "employment_status": "ACTIVE",
            "employment_type": choice(EMPLOYMENT_TYPES),
            "title": choice(TITLES),
            "hired_at": choice(hired),
            "date_of_birth": choice(births),
            "gender": choice(("FEMALE", "MALE", "NON_BINARY")),
        }
        if employees and rand() < 0.9:
            record["manager_id"] = employees[int(rand() * len(employees))]["id"]  # the supervisor
        r = rand()
        if r < LEAVER_SHARE:
            record["employment_status"] = "INACTIVE"
            record["terminated_at"] = choice(past_ends)
            record["termination_reason"] = choice(("Resignation", "End of contract", "Retirement"))
        elif r < LEAVER_SHARE + PLANNED_LEAVE_SHARE:
            record["terminated_at"] = choice(future_ends)  # leaving later: still ACTIVE today
        r = rand()
        placed: list[dict[str, str]] = []
        if r < NO_GROUPS_SHARE:
            pass
        elif r < NO_GROUPS_SHARE + NO_TEAM_SHARE or not teams:
            placed = [departments[int(rand() * n_departments)], offices[int(rand() * n_offices)]]
        else:
            t = int(rand() * n_teams)
            dept = departments[t % n_departments]  # a team sits in one department (not said on the wire)
            placed = [dept, teams[t], offices[int(rand() * n_offices)]]
        record["groups"] = [dict(g) for g in placed]  # each employee its own copies, as decoded from the wire
        employees.append(record)
    return {"provider": "personio", "employees": employees, "groups": listed_groups(employees)}


GOOGLE_INACTIVE_SHARE = 0.03  # suspended or archived
# Google's ids are 21-digit decimal strings. An odd multiplier prime to 2, 3 and 5 is a bijection modulo
# 9 * 10**20, so ids are unique (users and groups draw from one sequence) yet look opaque.
_GOOGLE_MULTIPLIER = 0x9E3779B97F4A7C19
_GOOGLE_SPAN = 9 * 10**20


def _google_id(n: int, salt: int) -> str:
    return str(10**20 + (n * _GOOGLE_MULTIPLIER + salt) % _GOOGLE_SPAN)


def _generate_google(users: int, seed: int, *, embedded_groups: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    rand = rng.random
    salt = rng.randrange(_GOOGLE_SPAN)

    def choice(seq: Sequence[str]) -> str:
        return seq[int(rand() * len(seq))]

    n_departments, n_teams = _group_counts(users)
    ids = (_google_id(users + g, salt) for g in range(1 + n_departments + n_teams))  # after the users' ids
    root: dict[str, Any] = {"id": next(ids), "name": "All Staff", "type": "GROUP", "user_ids": []}
    departments: list[dict[str, Any]] = [
        {"id": next(ids), "name": _numbered(DEPARTMENTS, d), "type": "GROUP", "parent_id": root["id"], "user_ids": []}
        for d in range(n_departments)
    ]
    teams: list[dict[str, Any]] = []
    for t in range(n_teams):
        dept = departments[t % n_departments]
        name = f"{dept['name']} – {_numbered(TEAMS, t)}"
        teams.append({"id": next(ids), "name": name, "type": "GROUP", "parent_id": dept["id"], "user_ids": []})

    created, updated = _timestamps(rng, 2015, 2023), _timestamps(rng, 2024, 2025)
    employees: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    for i in range(users):
        first, last = choice(FIRST_NAMES), choice(LAST_NAMES)
        local = f"{ascii_fold(first)}.{ascii_fold(last)}"
        n = taken[local] = taken.get(local, 0) + 1
        emp_id = _google_id(i, salt)
        record: dict[str, Any] = {
            "id": emp_id,
            "created_at": choice(created),
            "updated_at": choice(updated),
            "name": f"{first} {last}",
            "first_name": first,
            "last_name": last,
            "emails": [{"email": f"{local}{n if n > 1 else ''}@{WORK_DOMAIN}", "type": "WORK"}],  # primaryEmail
            "employment_status": "INACTIVE" if rand() < GOOGLE_INACTIVE_SHARE else "ACTIVE",
            "employee_number": f"E-{10000 + i}",  # externalIds[type=organization]
            "title": choice(TITLES),
            "telephones": [{"telephone": f"+49 30 {1000000 + int(rand() * 9000000)}", "type": "WORK"}],
        }
        if n_teams and rand() >= DEPARTMENT_MEMBER_SHARE:
            group = teams[int(rand() * n_teams)]
        else:
            group = departments[int(rand() * n_departments)]
        group["user_ids"].append(emp_id)
        if embedded_groups:
            record["groups"] = [{"id": group["id"], "name": group["name"], "type": "GROUP"}]
        employees.append(record)
    return {"provider": "google", "employees": employees, "groups": [root, *departments, *teams]}


def _generate(users: int, seed: int) -> dict[str, Any]:
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
