"""Every entry point of the product sets polars' allocator to hand freed memory back before polars loads
(settings/allocator.py): jemalloc reads its settings once, when polars is first imported, so the setting
counts only if it is in the environment at that moment. Each check runs in a fresh Python process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from settings.allocator import POLARS_ALLOCATOR_CONF

ROOT = Path(__file__).resolve().parent.parent

# Records the variable as it stands when `polars` itself is imported, then imports the entry point.
_PROBE = """
import importlib, importlib.abc, os, sys

class Watch(importlib.abc.MetaPathFinder):
    seen = "polars never imported"

    def find_spec(self, name, path=None, target=None):
        if name == "polars" and Watch.seen == "polars never imported":
            Watch.seen = os.environ.get("_RJEM_MALLOC_CONF", "unset")
        return None

sys.meta_path.insert(0, Watch())
importlib.import_module(sys.argv[1])
print(Watch.seen)
"""

# The modules a process of the product starts from: the CLI, the flows a Prefect worker loads from
# prefect.yaml's entrypoints, the admin API's ASGI application.
ENTRY_POINTS = ["cli.main", "flows.sync_tenant", "flows.sync_all", "flows.retention", "api.app"]


def _seen_by_polars(module: str, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"} | extra
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_polars_loads_with_the_allocator_told_to_give_memory_back(module: str) -> None:
    assert _seen_by_polars(module) in (POLARS_ALLOCATOR_CONF, "polars never imported")


def test_the_sync_flow_imports_polars_and_sets_the_allocator_first() -> None:
    # the check above must not pass only because nothing imports polars: the flow module surely does
    assert _seen_by_polars("flows.sync_tenant") == POLARS_ALLOCATOR_CONF


def test_an_operators_own_allocator_setting_is_kept() -> None:
    assert _seen_by_polars("flows.sync_tenant", _RJEM_MALLOC_CONF="dirty_decay_ms:5000") == "dirty_decay_ms:5000"
