"""The many-tenants bench (bench/many_tenants.py) measures the product's Prefect server as README.md documents it,
and what README.md documents are real Prefect settings (a misspelt one would be ignored without a word)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def readme_server_settings() -> dict[str, str]:
    """The server services' settings README's "Operating it on a Prefect server" exports before
    `prefect server start`."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Operating it on a Prefect server", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^export (PREFECT_SERVER_SERVICES_\w+)=(\S+)", section, flags=re.MULTILINE))


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # the bench imports its neighbour `scratch` as a script does
    spec = importlib.util.spec_from_file_location("many_tenants", REPO / "bench" / "many_tenants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_starts_the_prefect_server_with_the_settings_readme_documents(bench: ModuleType) -> None:
    documented = readme_server_settings()
    assert documented, "README's server section exports no server service setting"
    assert documented == bench.SERVER_SETTINGS


def test_readme_server_settings_batch_the_task_run_recorder_and_turn_no_service_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import Settings
    from prefect.settings.models.server.services import ServerServicesTaskRunRecorderSettings as Recorder

    documented = readme_server_settings()
    assert not [name for name in documented if name.endswith("_ENABLED")]  # automations, events, schedules: all on
    for name, value in documented.items():
        monkeypatch.setenv(name, value)
    services = Settings().server.services
    assert services.task_run_recorder.batch_size == 100
    assert services.task_run_recorder.flush_interval == 1
    assert Recorder.model_fields["batch_size"].default == 1  # what they change: Prefect's one event at a time
    assert services.event_persister.enabled and services.triggers.enabled and services.task_run_recorder.enabled
