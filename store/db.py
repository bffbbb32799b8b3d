"""Engines for the employee store, migrated to the newest schema on first use."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from domain.errors import ExplainedError
from settings import database_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would eat a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Apply every migration not yet applied (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def head_revision() -> str | None:
    """The newest migration's revision id, read from the `revision` and `down_revision` lines of the files in
    migrations/versions (the one revision no other revises); None when they do not read that way.

    Read as text because Alembic itself takes longer to import and to load its scripts (about 0.3 s) than a
    command such as `provision runs` takes for everything else; tests/test_imports.py checks it against
    Alembic's own head."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = re.search(r'^revision(?:: str)? = "([^"]+)"$', source, re.MULTILINE)
        down = re.search(r'^down_revision(?:: str \| None)? = (?:None|"([^"]+)")$', source, re.MULTILINE)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        if down.group(1):
            revised.add(down.group(1))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    """Whether the database has every migration already (then Alembic need not even be imported)."""
    head = head_revision()
    if head is None:
        return False
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, "alembic_version"):
            return False
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars()) == [head]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str | None = None) -> Engine:
    """The process's engine for `url` (default: the configured database), its schema brought up to date.

    One engine (and so one connection pool) per URL and process: tasks ask for it by URL instead of
    receiving a live engine, which must never cross a task boundary.
    """
    url = url or database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _new_engine(url)
    return engine


def _new_engine(url: str) -> Engine:
    parsed = _supported(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseConfigError(
                f"Cannot create the folder {folder} for the employee database {redact(url)}: {exc.strerror or exc}."
            ) from exc
    # hide_parameters: a failed statement's message must not carry employees' names or emails.
    engine = create_engine(url, hide_parameters=True)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        if not _at_head(engine):  # the first connection: where a wrong host, database, role or file shows
            upgrade(url)
    except DatabaseError as exc:
        engine.dispose()
        explained = _open_error(parsed, exc)
        if explained is None:
            raise
        raise explained from exc
    return engine


def redact(url: str) -> str:
    """The URL with its password hidden, fit for a message (also a string that is no URL at all)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(?<=:)[^:/@]*(?=@)", "***", url)  # whatever stands between ':' and '@'


# ---- why the employee database cannot be opened ---------------------------------------------------------

URL_FORMS = "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE"


class DatabaseConfigError(ExplainedError):
    """The employee database cannot be opened as configured: no URL, an unsupported kind, a server that does
    not answer or refuses, a file that is not SQLite. The sentence names the URL, its password hidden."""


def _supported(url: str) -> URL:
    """`url` parsed, or a DatabaseConfigError when it is no URL or names a database this product cannot use:
    SQLite, or PostgreSQL through psycopg 3 (store/bulk.py takes psycopg's own connection for COPY)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseConfigError(
            f"The employee database URL {redact(url)!r} is not a database URL; set PROVISIONING_DATABASE_URL to "
            f"{URL_FORMS}."
        ) from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql" and driver != "psycopg":
        fixed = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
        raise DatabaseConfigError(
            f"The employee database URL {redact(url)} names the driver {driver}, which is not installed; "
            f"use psycopg: {fixed}."
        )
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseConfigError(
            f"The employee database URL {redact(url)} names {backend}; the employee database is SQLite or "
            f"PostgreSQL: {URL_FORMS}."
        )
    return parsed


# SQLite's codes for a file it cannot use as the database (extended codes, e.g. SQLITE_IOERR_WRITE, included);
# any other SQLite error while migrating is a bug, and keeps its traceback.
SQLITE_OPEN_ERRORS = (
    "SQLITE_CANTOPEN",
    "SQLITE_PERM",
    "SQLITE_READONLY",
    "SQLITE_IOERR",
    "SQLITE_CORRUPT",
    "SQLITE_FULL",
)


def _open_error(url: URL, exc: DatabaseError) -> DatabaseConfigError | None:
    """The sentence for a database that could not be opened, or None for an error of another kind (a bug)."""
    if url.get_backend_name() == "sqlite":
        code = str(getattr(exc.orig, "sqlite_errorname", ""))
        if code == "SQLITE_NOTADB":
            return DatabaseConfigError(
                f"The employee database file {url.database} is not a SQLite database; point "
                "PROVISIONING_DATABASE_URL at another file or move this one away."
            )
        if code.startswith(SQLITE_OPEN_ERRORS):
            return DatabaseConfigError(f"Cannot open the employee database file {url.database} ({exc.orig}).")
        return None
    if isinstance(exc, OperationalError):
        return _postgres_open_error(url, exc.orig)
    return None


def _postgres_open_error(url: URL, error: BaseException | None) -> DatabaseConfigError:
    """Which of unreachable, no such database, unknown role (or the server's own reason) it was.

    The SQLSTATE decides where psycopg has one; but libpq reports a connection the server refused without it
    (psycopg's `sqlstate` is None then, 3D000 and 28000 included), so the server's `FATAL:` line is read, and
    libpq's own words for a server that never answered. A server whose messages are not in English has its
    line quoted as it is.
    """
    shown = url.render_as_string(hide_password=True)
    server = f"{url.host or 'localhost'}:{url.port or 5432}"
    sqlstate = getattr(error, "sqlstate", None)
    message = str(error)
    fatal = re.search(r"FATAL:\s*(.+)", message)
    if fatal is not None:
        said = fatal.group(1).strip()
    else:  # libpq: "connection failed: connection to server at "h", port p failed: WHY"
        said = (message.strip().splitlines() or ["no answer"])[0].rsplit("failed: ", 1)[-1].strip()
    if sqlstate == "3D000" or re.fullmatch(r'database ".*" does not exist', said):
        return DatabaseConfigError(
            f"The employee database {shown} does not exist: the PostgreSQL server at {server} has no database "
            f"{url.database!r}; create it or correct PROVISIONING_DATABASE_URL."
        )
    if re.fullmatch(r'role ".*" does not exist', said):  # SQLSTATE 28000, which pg_hba.conf refusals share
        return DatabaseConfigError(
            f"The PostgreSQL server at {server} knows no role {url.username!r} (employee database {shown}); "
            "create the role or correct the user in PROVISIONING_DATABASE_URL."
        )
    if sqlstate == "28P01" or said.startswith("password authentication failed"):
        return DatabaseConfigError(
            f"The PostgreSQL server at {server} refused the password of role {url.username!r} "
            f"(employee database {shown})."
        )
    if fatal is not None or sqlstate is not None:  # the server answered, with a reason of its own
        return DatabaseConfigError(f"Cannot open the employee database {shown}: the server at {server} says {said}.")
    return DatabaseConfigError(
        f"Cannot reach the PostgreSQL server of the employee database {shown}: nothing answers at {server} ({said})."
    )
