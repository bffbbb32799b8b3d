"""Shared fixtures: a fresh database per test on SQLite and on a real PostgreSQL server, a throwaway Prefect
API, and a fake upstream (the simulator served over real HTTP, tests/upstreams.py).

Postgres tests skip when no server answers, except under CI (`CI` set), where they fail instead.

Two speeds: `uv run pytest -m "not slow"` leaves out the tests marked `slow`: here, every test that runs
flows on the Prefect API and every hypothesis test with a database per example; by hand, real processes
and the real Prefect server. What stays covers every stage function, the client, the simulator, the CLI's
refusals and the load on both databases.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from store.db import make_engine, upgrade
from tests.upstreams import TOKEN, Upstream, serving

POSTGRES_ADMIN = os.environ.get("PROVISIONING_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """How many pytest-xdist workers `-n auto` (pyproject's addopts) starts: one per core for the fast tier;
    one more when slow tests may run, whose flows spend much of their time waiting on the Prefect API.

    Measured on the 2-core machine: the whole suite took 286 s on 2 workers, 244-264 s on 3, 275 s on 4;
    the fast tier 56 s on 2, 68 s on 3. `PYTEST_XDIST_AUTO_NUM_WORKERS` still decides when set.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    fast_tier_only = "not slow" in (config.option.markexpr or "")
    return cores if fast_tier_only else cores + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow, whichever module they are in: tests that run flows on the Prefect API (seconds to start the
    harness's server, about a second per flow run) and hypothesis tests that get a fresh database per
    example (several seconds each). The load's rules stay in the fast tier as example tests (test_load*.py)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        runs_flows = "prefect_api" in fixtures
        database_per_example = "engine" in fixtures and getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
        if runs_flows or database_per_example:
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Keep the call's report on the test item, so a fixture's teardown can tell a failed test (the browser
    tests save their screenshots then)."""
    report = yield
    if report.when == "call":
        item.report_call = report  # type: ignore[attr-defined]
    return report


def _postgres_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI and unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")


def _postgres_url(name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(POSTGRES_ADMIN)
    host, port, user = info.get("host", "127.0.0.1"), info.get("port", "5432"), info.get("user", "postgres")
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}"


# why: migrating a new database takes longer than copying one (on a busy 2-core machine 0.15 s against
# 0.01 s for SQLite), hundreds of times per run. So each test process migrates one database of each kind
# from nothing, with the same `upgrade` (a broken migration fails every database test), and every test
# gets a fresh copy of it.


@pytest.fixture(scope="session")
def _migrated_postgres() -> Iterator[str]:
    """The name of a PostgreSQL database migrated from nothing once per test process: the template."""
    name = f"provisioning_template_{uuid.uuid4().hex[:12]}"
    with _postgres_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        upgrade(_postgres_url(name))  # its own connection, closed after: a template must have none open
        yield name
    finally:
        with _postgres_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated from nothing once per test process: the template."""
    path = tmp_path_factory.mktemp("template") / "provisioning.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def postgres_url(_migrated_postgres: str) -> Iterator[str]:
    """A new PostgreSQL database of its own, already migrated, dropped after the test."""
    name = f"provisioning_test_{uuid.uuid4().hex[:12]}"
    with _postgres_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_migrated_postgres}"')
    try:
        yield _postgres_url(name)
    finally:
        with _postgres_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path, _migrated_sqlite: Path) -> str:
    """A new SQLite file of its own, already migrated."""
    path = tmp_path / "provisioning.db"
    shutil.copyfile(_migrated_sqlite, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, migrated database of each kind, also made the default for code under test."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    monkeypatch.setenv("PROVISIONING_DATABASE_URL", url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A throwaway Prefect API (temporary server and database) for tests that run whole flows.

    Once per test process: under pytest-xdist each worker has its own, on its own free port.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    """The simulator served over real HTTP with an empty source, and the token it accepts in the environment."""
    monkeypatch.setenv("UNIFIED_API_TOKEN", TOKEN)
    with serving() as served:
        yield served


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database of each kind, not migrated at all: for tests of one migration (store/migrations)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    name = f"provisioning_blank_{uuid.uuid4().hex[:12]}"
    with _postgres_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _postgres_url(name)
    finally:
        with _postgres_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
