"""The bulk moves of store/bulk.py in batches: every row arrives whole and as it was, whatever the batch edges
cut through (names with line breaks and quotes, null against empty text), on both databases."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import Engine, text

import store.bulk
from store.bulk import _csv_batches, _last_record_end, copy_in, copy_out

SCHEMA: dict[str, pl.DataType] = {"id": pl.Int64(), "name": pl.String(), "note": pl.String()}

# Values that COPY's CSV quotes: line breaks (alone, in pairs, at the ends), quotes, commas; and null vs "".
AWKWARD = ["plain", 'say "hi"', "two\nlines", "\n", "a,b", "", None, '"', "ends with\r\n", "\n\nx\n"]


def _frame(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "name": [AWKWARD[i % len(AWKWARD)] for i in range(n)],
            "note": [None if i % 3 else f"n{i}" for i in range(n)],
        },
        schema=SCHEMA,
    )


@pytest.fixture
def moved(engine: Engine) -> Engine:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE moved (id BIGINT, name TEXT, note TEXT)"))
    return engine


@pytest.mark.parametrize(("batch_rows", "batch_bytes"), [(50_000, 8 * 1024 * 1024), (7, 64), (1, 1)])
def test_rows_go_in_and_come_out_unchanged_whatever_the_batch_size(
    moved: Engine, monkeypatch: pytest.MonkeyPatch, batch_rows: int, batch_bytes: int
) -> None:
    monkeypatch.setattr(store.bulk, "BATCH_ROWS", batch_rows)
    monkeypatch.setattr(store.bulk, "BATCH_BYTES", batch_bytes)
    frame = _frame(503)
    with moved.begin() as conn:
        copy_in(conn, "moved", frame)
    with moved.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM moved")).scalar_one() == 503
        back = copy_out(conn, "SELECT id, name, note FROM moved WHERE id >= %s ORDER BY id", (0,), SCHEMA)
    assert back.equals(frame, null_equal=True)
    assert back.filter(pl.col("name") == "").height == frame.filter(pl.col("name") == "").height > 0


def test_an_empty_result_is_an_empty_frame_of_the_schema(moved: Engine) -> None:
    with moved.connect() as conn:
        back = copy_out(conn, "SELECT id, name, note FROM moved WHERE id >= %s", (0,), SCHEMA)
    assert back.is_empty()
    assert back.schema == pl.Schema(SCHEMA)


def test_a_batch_of_copy_text_ends_only_where_a_record_ends() -> None:
    assert _last_record_end(bytearray(b'1,a\n2,"b\nc"\n3,d')) == len(b'1,a\n2,"b\nc"\n')
    assert _last_record_end(bytearray(b'1,a\n2,"b\nc')) == len(b"1,a\n")  # the last newline is inside quotes
    assert _last_record_end(bytearray(b'1,"x\ny')) == 0  # no record ended yet
    assert _last_record_end(bytearray(b'1,"say ""hi"""\n2')) == len(b'1,"say ""hi"""\n')  # doubled quotes


def test_the_copy_text_is_regrouped_into_whole_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.bulk, "BATCH_BYTES", 5)
    chunks = [b'1,"a', b'\nb"\n2,', b"c\n3,d\n", b'4,"\n', b'"\n']  # cut anywhere, as COPY's chunks may be
    batches = list(_csv_batches(iter(chunks)))
    assert b"".join(batches) == b"".join(chunks)
    assert batches == [b'1,"a\nb"\n', b"2,c\n3,d\n", b'4,"\n"\n']
