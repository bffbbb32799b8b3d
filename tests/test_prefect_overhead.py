"""What Prefect costs a run beyond its stages, where the product can choose: a sync from the CLI runs its flow
in-process for the person watching it, without flow-run heartbeats (flows/sync_tenant.py `without_heartbeats`)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.test_sync_all import heartbeats_sent
from tests.upstreams import Upstream, in_one_group, setup_tenant, staff

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def two_staff(engine: Engine, upstream: Upstream) -> None:
    """Tenant acme, connected to a source of two people in its selected group."""
    upstream.source.replace(in_one_group(staff(2)))
    setup_tenant(engine, upstream, ["g"])


@pytest.mark.usefixtures("two_staff")
def test_a_sync_from_the_cli_sends_no_flow_run_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.common import run_sync

    sent = heartbeats_sent(monkeypatch)
    result = run_sync("acme", dry_run=False)
    assert result["outcome"] == "succeeded" and result["counts"]["created"] == 2
    assert sent == []


@pytest.mark.usefixtures("two_staff")
def test_a_flow_run_outside_those_doors_keeps_its_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats are off for those doors only, not everywhere: a worker's runs, for one, keep theirs."""
    from flows.sync_tenant import sync_tenant

    sent = heartbeats_sent(monkeypatch)
    assert sync_tenant("acme", trigger="manual")["outcome"] == "succeeded"
    assert sent == ["sync-acme"]
