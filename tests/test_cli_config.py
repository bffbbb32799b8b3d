"""Configuration mistakes as an operator makes them, through the real `provision` process: the database URL, the
simulator's dataset and port, the source's base URL, a missing token. Each is one sentence on stderr that says
which mistake it is, exit code 1, no traceback, and nothing written.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from store.db import make_engine
from store.repo import add_tenant
from tests.processes import clean_env, run_provision
from tests.tables import db_state, rows_of
from tests.upstreams import CONNECTION, TOKEN, serving, setup_tenant

# why: every test here is the real `provision` process (3-5 s each to start on 2 cores): the whole suite runs
# them, the fast tier leaves them out
pytestmark = pytest.mark.slow


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one `Error:` line of a refused command (asserting exit code 1, one line, no traceback)."""
    assert done.returncode == 1, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


def with_database(tmp_path: Path, url: str, **more: str) -> dict[str, str]:
    return clean_env(tmp_path) | {"PROVISIONING_DATABASE_URL": url} | more


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_database_exists(url: str, name: str) -> bool:
    """Whether the PostgreSQL server of `url` has a database `name` (asked through `url`'s own database)."""
    parsed = make_url(url)
    conninfo = f"host={parsed.host} port={parsed.port} user={parsed.username} dbname={parsed.database}"
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


# ---- item 8: the database URL -------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_postgres_scheme_url_is_read_as_psycopg(postgres_url: str, tmp_path: Path) -> None:
    # why: Heroku-style and libpq URLs say postgres:// (SQLAlchemy knows no such dialect); it means psycopg 3 here.
    url = postgres_url.replace("postgresql+psycopg://", "postgres://", 1)
    done = run_provision("tenant", "add", "acme", env=with_database(tmp_path, url))
    assert done.returncode == 0, done.stderr
    assert [row["id"] for row in rows_of(postgres_url, "tenants")] == ["acme"]


def test_a_database_url_that_is_no_url_says_what_one_looks_like(tmp_path: Path) -> None:
    error = refused(run_provision("tenant", "add", "acme", env=with_database(tmp_path, "notaurl")))
    assert "'notaurl' is not a database URL" in error
    assert "PROVISIONING_DATABASE_URL" in error and "postgresql+psycopg://" in error


def test_a_file_that_is_not_sqlite_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are notes, not a database\n" * 200)
    before = path.read_bytes()
    error = refused(run_provision("tenant", "add", "acme", env=with_database(tmp_path, f"sqlite:///{path}")))
    assert f"{path} is not a SQLite database" in error
    assert path.read_bytes() == before


def test_a_sqlite_file_whose_folder_cannot_be_made_names_the_folder(tmp_path: Path) -> None:
    error = refused(run_provision("tenant", "add", "acme", env=with_database(tmp_path, "sqlite:////proc/nope/p.db")))
    assert "Cannot create the folder /proc/nope" in error and "No such file or directory" in error


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("mistake", "said"),
    [
        ("unreachable", "Cannot reach the PostgreSQL server"),
        ("database", "does not exist"),
        ("role", "knows no role"),
    ],
)
def test_postgres_says_which_of_unreachable_missing_database_and_unknown_role(
    postgres_url: str, tmp_path: Path, mistake: str, said: str
) -> None:
    real = make_url(postgres_url)
    missing_db, unknown_role, password = f"nodb_{uuid.uuid4().hex[:10]}", f"nobody_{uuid.uuid4().hex[:10]}", "s3cret-pw"
    wrong = {
        "unreachable": real.set(port=1, password=password),
        "database": real.set(database=missing_db, password=password),
        "role": real.set(username=unknown_role, password=password),
    }[mistake]
    url = wrong.render_as_string(hide_password=False)
    error = refused(run_provision("tenant", "add", "acme", env=with_database(tmp_path, url)))
    assert said in error
    assert wrong.render_as_string(hide_password=True) in error  # which URL, its password hidden
    assert password not in error
    for other_said in {"Cannot reach the PostgreSQL server", "does not exist", "knows no role"} - {said}:
        assert other_said not in error
    assert not postgres_database_exists(postgres_url, missing_db)  # nothing was created on the way


# ---- item 8: the simulator's dataset and port ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ('{"employees": [', "is not JSON: Expecting value at line 2"),
        ('[{"id": "u1"}]', "is a JSON array, not an object with 'employees' and 'groups' lists"),
        ('{"foo": 1}', "has the unknown key(s) 'foo'"),  # why: served before as an empty tenant, without a word
    ],
)
def test_simulator_refuses_a_dataset_it_cannot_serve(tmp_path: Path, content: str, said: str) -> None:
    path = tmp_path / "dataset.json"
    path.write_text(content + "\n")
    done = run_provision("simulator", "--dataset", str(path), "--port", "0", env=clean_env(tmp_path), timeout=60)
    error = refused(done)
    assert f"The dataset file {path} {said}" in error
    assert "listening" not in done.stdout


def test_simulator_on_a_port_in_use_says_so_before_saying_listening(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_provision("simulator", "--port", str(port), "--users", "3", env=clean_env(tmp_path), timeout=60)
    error = refused(done)
    assert f"Cannot listen on 127.0.0.1:{port}" in error and "in use" in error
    assert "listening" not in done.stdout


# ---- item 9: the source's base URL ---------------------------------------------------------------------


@pytest.mark.parametrize("base_url", ["notaurl", "ftp://x"])
def test_connect_refuses_a_base_url_that_cannot_work_at_once(sqlite_url: str, tmp_path: Path, base_url: str) -> None:
    add_tenant(make_engine(sqlite_url), "acme")
    state = db_state(sqlite_url)
    env = with_database(tmp_path, sqlite_url, UNIFIED_API_TOKEN=TOKEN)
    done = run_provision(
        "connect", "acme", "--provider", "entra", "--connection-id", "c1", "--base-url", base_url, env=env
    )
    error = refused(done)
    assert f"{base_url!r} is not an http(s) URL" in error
    assert "attempts" not in error and "UnsupportedProtocol" not in error  # refused, not retried as transient
    assert db_state(sqlite_url) == state


def test_connect_says_a_base_url_ending_in_hris_looks_wrong_not_the_connection_id(
    sqlite_url: str, tmp_path: Path
) -> None:
    add_tenant(make_engine(sqlite_url), "acme")
    state = db_state(sqlite_url)
    env = with_database(tmp_path, sqlite_url, UNIFIED_API_TOKEN=TOKEN)
    with serving() as upstream:  # the connection id is right: the simulator serves CONNECTION
        done = run_provision(
            "connect", "acme", "--provider", "entra", "--connection-id", CONNECTION,
            "--base-url", f"{upstream.url}/hris", env=env,
        )  # fmt: skip
        error = refused(done)
        assert upstream.requested_kinds() == set()  # nothing sent there, the token least of all
    assert f"the base URL {upstream.url}/hris looks wrong" in error and f"use {upstream.url}." in error
    assert "wrong connection id" not in error
    assert db_state(sqlite_url) == state


def test_connect_to_an_unreachable_source_names_its_url(sqlite_url: str, tmp_path: Path) -> None:
    add_tenant(make_engine(sqlite_url), "acme")
    state = db_state(sqlite_url)
    url = f"http://127.0.0.1:{closed_port()}"
    env = with_database(tmp_path, sqlite_url, UNIFIED_API_TOKEN=TOKEN)
    # A refused connection is transient: the client tries it 5 times with backoff (a few seconds) first.
    done = run_provision("connect", "acme", "--provider", "entra", "--connection-id", "c1", "--base-url", url, env=env)
    error = refused(done)
    assert f"Unified.to at {url}/unified/connection/c1" in error and "connection failed" in error
    assert db_state(sqlite_url) == state


# ---- item 10: a missing token ---------------------------------------------------------------------------


def started_a_prefect_server(home: Path) -> bool:
    """Whether a temporary Prefect server ran with this home: it leaves its database in ~/.prefect."""
    return (home / ".prefect" / "prefect.db").exists()


def test_connect_without_token_or_prefect_server_says_the_variable_is_missing(sqlite_url: str, tmp_path: Path) -> None:
    add_tenant(make_engine(sqlite_url), "acme")
    state = db_state(sqlite_url)
    with serving() as upstream:
        done = run_provision(
            "connect", "acme", "--provider", "entra", "--connection-id", CONNECTION, "--base-url", upstream.url,
            env=with_database(tmp_path, sqlite_url),
        )  # fmt: skip
        error = refused(done)
        assert upstream.requested_kinds() == set()
    assert error.startswith("Error: UNIFIED_API_TOKEN is not set") and "PREFECT_API_URL" in error
    assert not started_a_prefect_server(tmp_path)
    assert db_state(sqlite_url) == state


def test_sync_without_token_is_refused_before_prefect_starts(sqlite_url: str, tmp_path: Path) -> None:
    setup_tenant(make_engine(sqlite_url), f"http://127.0.0.1:{closed_port()}", ["g"])
    state = db_state(sqlite_url)
    error = refused(run_provision("sync", "acme", env=with_database(tmp_path, sqlite_url)))
    assert error.startswith("Error: UNIFIED_API_TOKEN is not set")
    assert not started_a_prefect_server(tmp_path)
    assert db_state(sqlite_url) == state  # no run row, no audit entry
