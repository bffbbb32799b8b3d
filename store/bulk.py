"""Bulk moves between polars frames and tables: COPY on Postgres, one DBAPI executemany/fetch on SQLite."""

from __future__ import annotations

from typing import Any

import polars as pl
from sqlalchemy import Connection


def _driver_connection(conn: Connection) -> Any:
    """psycopg's own connection under SQLAlchemy's, for COPY (SQLAlchemy has no API for it)."""
    dbapi = conn.connection.driver_connection
    if dbapi is None:  # a connection SQLAlchemy has already invalidated
        raise RuntimeError("the database connection was closed before COPY")
    return dbapi


def copy_in(conn: Connection, table: str, frame: pl.DataFrame) -> None:
    """Insert every row of `frame` into `table` (columns named as the frame's)."""
    if frame.is_empty():
        return
    columns = ", ".join(frame.columns)
    if conn.dialect.name == "postgresql":
        dbapi = _driver_connection(conn)
        # polars writes null as an empty field and "" as a quoted one: exactly COPY's CSV reading.
        with dbapi.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(frame.write_csv(include_header=False))
    else:
        marks = ", ".join("?" * frame.width)
        conn.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(frame.iter_rows()))


def copy_out(conn: Connection, select: str, params: tuple[Any, ...], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The rows of a SELECT (DBAPI placeholders: %s on Postgres, ? on SQLite) as a frame of `schema`."""
    if conn.dialect.name == "postgresql":
        dbapi = _driver_connection(conn)
        with dbapi.cursor() as cursor, cursor.copy(f"COPY ({select}) TO STDOUT WITH (FORMAT csv)", params) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
        return pl.read_csv(data, has_header=False, schema=schema) if data else pl.DataFrame(schema=schema)
    rows = conn.exec_driver_sql(select.replace("%s", "?"), params).all()
    return pl.DataFrame(rows, schema=schema, orient="row")
