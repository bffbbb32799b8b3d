"""The data behind the simulator: a dataset dict, or a dataset file that is re-read when it changes.

A dataset is `{"employees": [...], "groups": [...]}` in Unified.to's wire format. The records are
served as they are, so a dataset may hold deliberately broken records (a string instead of an object,
an id that is a number, ...) to exercise clients.

A file source stats the file on every request (cheap) and reloads it when its mtime or size changed,
so a scenario can change the source between two syncs while the simulator keeps running. Write the
file atomically (write a temporary file, then `os.replace`) so that a request never sees half a file;
should it anyway, the previous data is kept and the load is retried on the next request.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.errors import ExplainedError
from simulator.faults import PathKind

Dataset = Mapping[str, Any]
DATASET_KEYS = ("employees", "groups")


class DatasetError(ExplainedError, ValueError):
    """A dataset the simulator cannot serve: not JSON, not an object, no `employees` or `groups` list.

    A ValueError too, so that a half-written file met on a reload is still waited out (SimulatorSource.current).
    """


def _project(record: Any, fields: set[str]) -> Any:
    """The record with only the requested fields; a non-object record as it is."""
    if not isinstance(record, dict):
        return record
    return {k: v for k, v in record.items() if k in fields}


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Listing:
    """The records of one kind, with an id index and a lazily filled cache of their JSON encodings."""

    records: list[Any]
    index: dict[str, int] = field(init=False)
    # One cache per field selection (None: the whole record), filled as records are served.
    _encoded: dict[frozenset[str] | None, list[bytes | None]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {}
        for i, rec in enumerate(self.records):
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                self.index.setdefault(rec["id"], i)
        self._encoded = {}

    def encoded(self, i: int, fields: set[str] | None = None) -> bytes:
        # Benchmarks page through hundreds of thousands of records, with the client's `fields` every
        # time; encode each record once per selection.
        key = frozenset(fields) if fields is not None else None
        cache = self._encoded.get(key)
        if cache is None:
            cache = self._encoded[key] = [None] * len(self.records)
        enc = cache[i]
        if enc is None:
            record = self.records[i] if fields is None else _project(self.records[i], fields)
            enc = cache[i] = encode_json(record)
        return enc


@dataclass
class TenantData:
    employee: Listing
    group: Listing

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, name: str = "The dataset") -> TenantData:
        """The listings of `dataset`; a DatasetError (its sentence begins with `name`) when it is no dataset.

        Either list may be missing (an empty listing), but not both, and no other key may stand beside them:
        `{"foo": 1}` or a misspelt `"employee"` would otherwise serve an empty tenant without a word.
        """
        if not isinstance(dataset, Mapping):
            raise DatasetError(
                f"{name} is a JSON {_json_kind(dataset)}, not an object with 'employees' and 'groups' lists."
            )
        unknown = [str(key) for key in dataset if key not in DATASET_KEYS]
        if unknown or not dataset:
            said = f"has the unknown key(s) {', '.join(map(repr, unknown))}" if unknown else "is an empty object"
            raise DatasetError(f"{name} {said}; a dataset is an object with 'employees' and 'groups' lists.")
        employees = dataset.get("employees", [])
        groups = dataset.get("groups", [])
        for key, value in (("employees", employees), ("groups", groups)):
            if not isinstance(value, list):
                raise DatasetError(f"{name}'s {key!r} is a JSON {_json_kind(value)}, not a list.")
        return cls(employee=Listing(list(employees)), group=Listing(list(groups)))

    def listing(self, kind: PathKind) -> Listing:
        return self.employee if kind == "employee" else self.group


class SimulatorSource:
    """Where the simulator's tenant comes from: an in-memory dataset or a dataset file."""

    def __init__(self, dataset: Dataset | None = None, *, path: str | os.PathLike[str] | None = None) -> None:
        if (dataset is None) == (path is None):
            raise ValueError("give exactly one of a dataset or a path")
        self._lock = threading.Lock()
        self._path = Path(path) if path is not None else None
        self._stat: tuple[int, int] | None = None
        if dataset is not None:
            self._data = TenantData.from_dataset(dataset)
        else:
            self._data = self._load_file()  # a broken file at start-up is an error, not a silent empty tenant

    @classmethod
    def coerce(cls, source: SimulatorSource | Dataset | str | os.PathLike[str]) -> SimulatorSource:
        if isinstance(source, SimulatorSource):
            return source
        if isinstance(source, str | os.PathLike):
            return cls(path=source)
        return cls(source)

    @property
    def path(self) -> Path | None:
        return self._path

    def replace(self, dataset: Dataset) -> None:
        """Swap the served tenant (in-memory sources; for a file source, rewrite the file instead)."""
        self._data = TenantData.from_dataset(dataset)

    def current(self) -> TenantData:
        if self._path is not None:
            try:
                st = self._path.stat()
            except OSError:
                return self._data  # mid-replace on some filesystems: serve what we have
            if (st.st_mtime_ns, st.st_size) != self._stat:
                # A half-written file: keep the previous data and retry on the next request.
                with self._lock, contextlib.suppress(OSError, ValueError):
                    self._data = self._load_file()
        return self._data

    def _load_file(self) -> TenantData:
        if self._path is None:
            raise RuntimeError("this simulator source serves a dataset in memory, not a file")
        name = f"The dataset file {self._path}"
        try:
            st = self._path.stat()
            body = self._path.read_bytes()
        except OSError as exc:
            raise DatasetError(f"{name} cannot be read: {exc.strerror or exc}.") from exc
        try:
            content = json.loads(body)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{name} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
        except ValueError:  # not UTF-8 (nor UTF-16/32)
            raise DatasetError(f"{name} is not JSON: it is not UTF-8 text.") from None
        data = TenantData.from_dataset(content, name=name)
        self._stat = (st.st_mtime_ns, st.st_size)
        return data


def _json_kind(value: Any) -> str:
    """What JSON calls the type of a decoded value ("array", "string", ...), for a message."""
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", dict: "object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)
