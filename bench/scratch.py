"""A throwaway employee database for one benchmark run: a SQLite file in `folder`, or a new PostgreSQL
database on the server of `PROVISIONING_TEST_POSTGRES` (the tests' default), dropped at the end."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_database(kind: str, folder: Path) -> Iterator[str]:
    """The database URL, for the length of the block."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    import psycopg

    admin = os.environ.get("PROVISIONING_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    name = f"provisioning_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(admin)
    try:
        yield f"postgresql+psycopg://{info.get('user', 'postgres')}@{info.get('host')}:{info.get('port', 5432)}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
