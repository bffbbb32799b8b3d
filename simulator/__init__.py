"""A local fake of the Unified.to HRIS API: the ASGI app, its data generator and its fault switches."""

from simulator.app import SeenRequest, create_app
from simulator.datasets import edge_case_dataset
from simulator.faults import Fault, FaultPlan
from simulator.generator import generate_dataset
from simulator.inprocess import SyncASGITransport
from simulator.serve import run_simulator_command, running_simulator
from simulator.source import SimulatorSource

__all__ = [
    "Fault",
    "FaultPlan",
    "SeenRequest",
    "SimulatorSource",
    "SyncASGITransport",
    "create_app",
    "edge_case_dataset",
    "generate_dataset",
    "run_simulator_command",
    "running_simulator",
]
