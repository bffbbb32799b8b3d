"""Scripted faults for the simulator: a queue of forced responses, consumed one per matching request.

    plan = FaultPlan([Fault(status=429, retry_after="1"), Fault(status=503, kind="group")])
    app = create_app(dataset, faults=plan)

A fault with `kind=None` applies to the next request of any kind; otherwise only to the next request
whose path is of that kind (`employee` or `group`, list or get). Faults are consumed in order: the first
queued fault that applies to a request is the one it gets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

PathKind = Literal["employee", "group"]


@dataclass(frozen=True)
class Fault:
    """One forced response.

    `body=None` gives the API's JSON error envelope for `status`; a string or bytes body is sent verbatim
    (for a malformed payload, e.g. `Fault(status=200, body="<html>")`). `delay_s` sleeps before
    answering (to trip a client's read timeout).
    """

    status: int
    retry_after: str | None = None
    kind: PathKind | None = None
    body: str | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    message: str | None = None


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

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def take(self, kind: PathKind) -> Fault | None:
        """Remove and return the first queued fault that applies to a request of `kind`, if any."""
        with self._lock:
            for i, fault in enumerate(self._queue):
                if fault.kind is None or fault.kind == kind:
                    del self._queue[i]
                    self.served.append(fault)
                    return fault
        return None
