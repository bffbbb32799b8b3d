"""A served simulator and a client for it, for tests of the Unified.to client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from simulator import FaultPlan, SimulatorSource
from simulator.app import SeenRequest
from sources.unified import UnifiedClient


@dataclass
class Sim:
    url: str
    source: SimulatorSource
    faults: FaultPlan
    state: Any  # the app's _Simulator: requests, received, max_in_flight
    token: str
    sleeps: list[float] = field(default_factory=list)

    def client(self, **kwargs: Any) -> UnifiedClient:
        """A client of the served simulator that records its backoff sleeps instead of sleeping."""
        options: dict[str, Any] = {
            "base_url": self.url,
            "token": SecretStr(self.token),
            "connection_id": "conn-demo",
            "tenant": "acme",
            "sleep": self.sleeps.append,
        }
        options.update(kwargs)
        return UnifiedClient(**options)

    def employee_requests(self) -> list[SeenRequest]:
        return [r for r in self.state.requests if r.kind == "employee"]

    def reads(self) -> int:
        """How many times the employee listing was read from its start (a page at offset 0)."""
        return sum(1 for r in self.employee_requests() if r.offset == "0")
