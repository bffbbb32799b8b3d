"""A local fake of the Unified.to HRIS API and its connections: the ASGI app, its data generator and its
fault switches.

The names below are imported on first use (PEP 562), so that `simulator.faults` alone (the CLI's help
text) does not pull in the web stack.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.app import SeenRequest, create_app
    from simulator.connections import Connection, NextConnection
    from simulator.datasets import edge_case_dataset, provider_dataset
    from simulator.faults import Fault, FaultPlan
    from simulator.generator import generate_dataset, listed_groups
    from simulator.inprocess import SyncASGITransport
    from simulator.serve import run_simulator_command, running_simulator
    from simulator.source import GROUP_ENDPOINTS, SimulatorSource

_WHERE = {
    "Connection": "simulator.connections",
    "NextConnection": "simulator.connections",
    "Fault": "simulator.faults",
    "GROUP_ENDPOINTS": "simulator.source",
    "FaultPlan": "simulator.faults",
    "SeenRequest": "simulator.app",
    "SimulatorSource": "simulator.source",
    "SyncASGITransport": "simulator.inprocess",
    "create_app": "simulator.app",
    "edge_case_dataset": "simulator.datasets",
    "generate_dataset": "simulator.generator",
    "listed_groups": "simulator.generator",
    "provider_dataset": "simulator.datasets",
    "run_simulator_command": "simulator.serve",
    "running_simulator": "simulator.serve",
}

__all__ = [
    "GROUP_ENDPOINTS",
    "Connection",
    "Fault",
    "FaultPlan",
    "NextConnection",
    "SeenRequest",
    "SimulatorSource",
    "SyncASGITransport",
    "create_app",
    "edge_case_dataset",
    "generate_dataset",
    "listed_groups",
    "provider_dataset",
    "run_simulator_command",
    "running_simulator",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
