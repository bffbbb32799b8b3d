"""The data behind the simulator: a dataset dict, or a dataset file that is re-read when it changes.

A dataset is `{"employees": [...], "groups": [...]}` in Unified.to's wire format. The records are
served as they are, so a dataset may hold deliberately broken records (a string instead of an object,
an id that is a number, ...) to exercise clients. Two optional top-level keys say which provider's shape
the records have (simulator.datasets describes each): `"provider"` (entra, personio, google) and
`"group_endpoint"`, how `/hris/group` answers: `"listed"` (the dataset's `groups`), `"unsupported"` (501,
as Unified answers for an integration without that object) or `"empty"` (`[]`). Without `group_endpoint`
it is the provider's default: personio `unsupported`, entra and google `listed`.

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
from typing import Any, Literal, cast

from domain.errors import ExplainedError
from domain.words import PROVIDERS
from simulator.faults import PathKind

Dataset = Mapping[str, Any]
DATASET_KEYS = ("employees", "groups")
PROFILE_KEYS = ("provider", "group_endpoint")  # optional: whose shape the records have, how groups are listed

# How `/hris/group` answers: the dataset's groups, 501 (the integration has no group object), or `[]`.
GroupEndpoint = Literal["listed", "unsupported", "empty"]
GROUP_ENDPOINTS: tuple[GroupEndpoint, ...] = ("listed", "unsupported", "empty")
# Each provider's default. Personio has no group list upstream (upstream-apis.md 3); whether Unified then
# answers 501, `[]` or a list built from the employees is UNCONFIRMED, so all three can be chosen.
DEFAULT_GROUP_ENDPOINTS: dict[str, GroupEndpoint] = {"entra": "listed", "personio": "unsupported", "google": "listed"}


class DatasetError(ExplainedError, ValueError):
    """A dataset the simulator cannot serve: not JSON, not an object, no `employees` or `groups` list.

    A ValueError too, so that a half-written file met on a reload is still waited out (SimulatorSource.current).
    """


def provider_of(value: object, *, what: str = "The provider") -> str:
    """`value` if it is one of the product's providers, else a DatasetError (a ValueError) saying which are."""
    if not isinstance(value, str) or value not in PROVIDERS:
        raise DatasetError(f"{what} is {value!r}; choose one of {', '.join(PROVIDERS)}.")
    return value


def group_endpoint_of(value: object, *, what: str = "The group endpoint (how /hris/group answers)") -> GroupEndpoint:
    """`value` if it is one of GROUP_ENDPOINTS, else a DatasetError (a ValueError) saying which are."""
    if not isinstance(value, str) or value not in GROUP_ENDPOINTS:
        raise DatasetError(f"{what} is {value!r}; choose one of {', '.join(GROUP_ENDPOINTS)}.")
    return cast(GroupEndpoint, value)


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
    provider: str | None = None  # whose shape the records have (the dataset's "provider"); None: not said
    group_endpoint: GroupEndpoint | None = None  # the dataset's "group_endpoint"; None: the provider's default

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, name: str = "The dataset") -> TenantData:
        """The listings of `dataset`; a DatasetError (its sentence begins with `name`) when it is no dataset.

        Either list may be missing (an empty listing), but not both, and no other key than PROFILE_KEYS may
        stand beside them: `{"foo": 1}` or a misspelt `"employee"` would otherwise serve an empty tenant
        without a word.
        """
        if not isinstance(dataset, Mapping):
            raise DatasetError(
                f"{name} is a JSON {_json_kind(dataset)}, not an object with 'employees' and 'groups' lists."
            )
        unknown = [str(key) for key in dataset if key not in DATASET_KEYS + PROFILE_KEYS]
        if unknown or not any(key in dataset for key in DATASET_KEYS):
            if unknown:
                said = f"has the unknown key(s) {', '.join(map(repr, unknown))}"
            else:
                said = "is an empty object" if not dataset else "has neither 'employees' nor 'groups'"
            raise DatasetError(
                f"{name} {said}; a dataset is an object with 'employees' and 'groups' lists "
                "(and optionally 'provider' and 'group_endpoint')."
            )
        employees = dataset.get("employees", [])
        groups = dataset.get("groups", [])
        for key, value in (("employees", employees), ("groups", groups)):
            if not isinstance(value, list):
                raise DatasetError(f"{name}'s {key!r} is a JSON {_json_kind(value)}, not a list.")
        provider = dataset.get("provider")
        endpoint = dataset.get("group_endpoint")
        return cls(
            employee=Listing(list(employees)),
            group=Listing(list(groups)),
            provider=None if provider is None else provider_of(provider, what=f"{name}'s 'provider'"),
            group_endpoint=None if endpoint is None else group_endpoint_of(endpoint, what=f"{name}'s 'group_endpoint'"),
        )

    def served_group_endpoint(
        self, override: GroupEndpoint | None = None, provider: str | None = None
    ) -> GroupEndpoint:
        """How `/hris/group` answers for this data: `override` (the app's), else the dataset's own
        `group_endpoint`, else the default of the dataset's provider, else of `provider` (the app's), else listed."""
        if override is not None:
            return override
        if self.group_endpoint is not None:
            return self.group_endpoint
        return DEFAULT_GROUP_ENDPOINTS.get(self.provider or provider or "entra", "listed")

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
        """Swap the served tenant (in-memory sources; for a file source, rewrite the file instead).

        The new dataset's `provider` and `group_endpoint` take effect with it (the next request)."""
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
