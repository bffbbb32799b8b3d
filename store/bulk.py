"""Bulk moves between polars frames and tables: COPY on Postgres, DBAPI executemany/fetchmany on SQLite.

Both directions go in batches of BATCH_ROWS rows (COPY's text in pieces of about BATCH_BYTES), so that what
a move holds beside the frame is one batch, never the whole table as text: at 300k users the load's run
changes made one 490 MB CSV string, and the stored memberships one 230 MB bytes (bench/README.md, "Memory").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl
from sqlalchemy import Connection

BATCH_ROWS = 50_000  # rows per CSV text written, or per executemany / fetchmany on SQLite
BATCH_BYTES = 8 * 1024 * 1024  # COPY text read before it is parsed into a frame


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
            for batch in frame.iter_slices(BATCH_ROWS):
                copy.write(batch.write_csv(include_header=False))
    else:
        marks = ", ".join("?" * frame.width)
        for batch in frame.iter_slices(BATCH_ROWS):
            conn.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(batch.iter_rows()))


def copy_out(conn: Connection, select: str, params: tuple[Any, ...], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The rows of a SELECT (DBAPI placeholders: %s on Postgres, ? on SQLite) as a frame of `schema`."""
    if conn.dialect.name == "postgresql":
        dbapi = _driver_connection(conn)
        with dbapi.cursor() as cursor, cursor.copy(f"COPY ({select}) TO STDOUT WITH (FORMAT csv)", params) as copy:
            frames = [pl.read_csv(text, has_header=False, schema=schema) for text in _csv_batches(copy)]
    else:
        result = conn.exec_driver_sql(select.replace("%s", "?"), params)
        frames = []
        while rows := result.fetchmany(BATCH_ROWS):
            frames.append(pl.DataFrame(rows, schema=schema, orient="row"))
    # One chunk per batch, not copied into one: the stages that read the frame take it chunked.
    return pl.concat(frames, rechunk=False) if frames else pl.DataFrame(schema=schema)


def _csv_batches(chunks: Iterator[Any]) -> Iterator[bytes]:
    """COPY's CSV output in pieces of about BATCH_BYTES, each ending at the end of a record.

    A record ends at a newline outside quotes; COPY quotes a field holding a newline, and doubles a quote
    inside one, so a newline ends a record exactly when the quotes before it are even in number.
    """
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        if len(pending) < BATCH_BYTES:
            continue
        end = _last_record_end(pending)
        if end:
            yield bytes(pending[:end])
            del pending[:end]
    if pending:
        yield bytes(pending)


def _last_record_end(text: bytearray) -> int:
    """The length of the longest prefix of `text` (which starts at a record's start) made of whole CSV records
    (0: none). The last newline is a record's end unless an odd number of quotes stands before it (a quoted
    field holding a newline, which only a name or group name with a line break makes): then the one before."""
    newline = text.rfind(b"\n")
    while newline != -1 and text.count(b'"', 0, newline) % 2:
        newline = text.rfind(b"\n", 0, newline)
    return newline + 1
