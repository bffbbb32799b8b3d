"""Scripted faults for the simulator: a queue of forced responses, consumed one per matching request.

    plan = FaultPlan([Fault(status=429, retry_after="1"), Fault(status=503, kind="group")])
    app = create_app(dataset, faults=plan)

A fault with `kind=None` applies to the next HRIS request of any kind; otherwise only to the next request
whose path is of that kind (`employee` or `group`, list or get; `connection` for `/unified/connection`,
which only a fault naming it reaches, and only with a replaced answer or a delay). A fault with `at_offset` applies only
to a list request for that offset. Faults are consumed in order: the first queued fault that applies to
a request is the one it gets; a `sticky` fault is never consumed (it applies to every such request).

Two families of faults:
- replacing the answer: a `status` other than 200, or a verbatim `body` (malformed payloads);
- bending the real answer: `drop` (the connection closes mid-body), `truncate` (the page's JSON cut
  in half, well framed), `shift` (offset drift: the page starts `shift` records later, so -1 repeats
  the previous page's last record and +1 skips one), `page_cut` (the page holds only that many records,
  so the listing seems to end early: a missed page), `total_delta` / `omit_total` (an
  `X-Total-Count` off by that much, or none), `empty` (an empty list, `X-Total-Count: 0`, for a
  connection that has users); and a hostile or broken source: `oversize` (the page followed by that many
  bytes of JSON whitespace, streamed without a Content-Length, so only a client that counts what it reads
  stops it), `overlong` (that many records more than `limit` asked for), `ignore_offset` (every page starts
  at the first record, whatever `offset` says).

`parse_fault_spec` reads the `provision simulator --fault` syntax (see FAULT_SPEC_HELP).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

PathKind = Literal["employee", "group"]  # the HRIS listings
FaultKind = Literal["employee", "group", "connection"]  # what a fault can be aimed at


@dataclass(frozen=True)
class Fault:
    """One forced or bent response.

    `body=None` gives the API's JSON error envelope for a non-200 `status`; a string or bytes body is sent
    verbatim (for a malformed payload, e.g. `Fault(status=200, body="<html>")`). `delay_s` sleeps before
    answering (to trip a client's read timeout). The other fields bend the real listing (module docstring).
    """

    status: int = 200
    retry_after: str | None = None
    kind: FaultKind | None = None
    body: str | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    message: str | None = None
    at_offset: int | None = None
    sticky: bool = False
    drop: bool = False
    truncate: bool = False
    shift: int = 0
    page_cut: int | None = None
    total_delta: int = 0
    omit_total: bool = False
    empty: bool = False
    oversize: int = 0
    overlong: int = 0
    ignore_offset: bool = False

    @property
    def replaces_answer(self) -> bool:
        """True when the fault is the whole answer; False when it bends the real listing."""
        return self.status != 200 or self.body is not None


class FaultPlan:
    """A thread-safe queue of faults (the server runs in another thread than the test that scripts it)."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = list(faults)
        self.served: list[Fault] = []

    def add(self, *faults: Fault) -> FaultPlan:
        with self._lock:
            self._queue.extend(faults)
        return self

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.served.clear()

    @property
    def pending(self) -> int:
        """Faults still waiting for their request (sticky ones never stop waiting)."""
        with self._lock:
            return sum(1 for f in self._queue if not f.sticky)

    def take(self, kind: FaultKind, offset: int | None = None) -> Fault | None:
        """Remove and return the first queued fault that applies to a request of `kind` (at `offset`), if any."""
        with self._lock:
            for i, fault in enumerate(self._queue):
                # A fault for "any kind" predates the connection endpoints and means the HRIS reads; a
                # connection request gets only the faults aimed at it, so existing fault plans stay as they were.
                if fault.kind != kind and (fault.kind is not None or kind == "connection"):
                    continue
                if fault.at_offset is not None and fault.at_offset != offset:
                    continue
                if not fault.sticky:
                    del self._queue[i]
                self.served.append(fault)
                return fault
        return None


# ---- the `provision simulator --fault` syntax ------------------------------------------------------

FAULT_SPEC_HELP = """\
A fault to inject, repeatable: NAME[xCOUNT][@employee|@group][:OFFSET]. COUNT is how many requests get
it (default 1; `*` = every request); @employee/@group limits it to one endpoint; :OFFSET to the list
page at that offset. Names: 429 (with Retry-After: 1), 429-bare (no Retry-After), 500, 502, 503, 504,
400, 401, 403, 404, 501, slow (answers after --slow-seconds, past a client's timeout), drop (closes the
connection mid-response), truncate (the page's JSON cut in half), malformed (an HTML page with status
200), not-array (a JSON object instead of the array), repeat (offset drift: the page repeats the
previous page's last record; default offset 100), skip (offset drift: one record skipped; default
offset 100), short-page (the page at OFFSET, default 100, holds half its records: the listing seems to end
early), wrong-total (X-Total-Count 10 more than the records), no-total (no X-Total-Count),
empty (an empty employee list; default @employee), oversize (the page padded to over 128 MiB, streamed),
overlong (a page 10 records longer than the limit asked for), ignore-offset (every page from the first
record: use ignore-offsetx*). Example: --fault 429x3 --fault 503x2@group."""

OVERSIZE_BYTES = 128 * 1024 * 1024  # twice the client's default cap (PROVISIONING_MAX_RESPONSE_BYTES)
_SPEC = re.compile(r"^(?P<name>[a-z0-9-]+?)(?:x(?P<count>\d+|\*))?(?:@(?P<kind>employee|group))?(?::(?P<offset>\d+))?$")
_STATUSES = {400, 401, 403, 404, 500, 501, 502, 503, 504}


def _fault_named(name: str, slow_seconds: float) -> Fault:
    if name.isdigit() and int(name) in _STATUSES:
        return Fault(status=int(name))
    simple: dict[str, Fault] = {
        "429": Fault(status=429, retry_after="1"),
        "429-bare": Fault(status=429),
        "slow": Fault(delay_s=slow_seconds),
        "drop": Fault(drop=True),
        "truncate": Fault(truncate=True),
        "malformed": Fault(body="<html><body>502 Bad Gateway</body></html>"),
        "not-array": Fault(body='{"data": []}'),
        "repeat": Fault(shift=-1, at_offset=100),
        "skip": Fault(shift=1, at_offset=100),
        "short-page": Fault(page_cut=50, at_offset=100),
        "wrong-total": Fault(total_delta=10),
        "no-total": Fault(omit_total=True),
        "empty": Fault(empty=True, kind="employee"),
        "oversize": Fault(oversize=OVERSIZE_BYTES),
        "overlong": Fault(overlong=10),
        "ignore-offset": Fault(ignore_offset=True),
    }
    if name not in simple:
        raise ValueError(f"unknown fault {name!r}")
    return simple[name]


def parse_fault_spec(spec: str, *, slow_seconds: float = 60.0) -> list[Fault]:
    """`429x3@employee` -> three 429 faults on the employee endpoint (see FAULT_SPEC_HELP)."""
    match = _SPEC.match(spec.strip().lower())
    if match is None:
        raise ValueError(f"cannot read fault {spec!r}; expected NAME[xCOUNT][@employee|@group][:OFFSET]")
    fault = _fault_named(match["name"], slow_seconds)
    changes: dict[str, object] = {}
    if match["kind"]:
        changes["kind"] = match["kind"]
    if match["offset"]:
        changes["at_offset"] = int(match["offset"])
    if match["count"] == "*":
        changes["sticky"] = True
    fault = replace(fault, **changes)  # type: ignore[arg-type]
    count = 1 if match["count"] in (None, "*") else int(match["count"])
    if count < 1:
        raise ValueError(f"fault {spec!r} must apply to at least one request")
    return [fault] * count
