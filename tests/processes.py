"""The `provision` command as an operator runs it: its real process, with an environment of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without the product's or Prefect's settings, its home in `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVISIONING_", "PREFECT_", "UNIFIED_"))}
    return {**env, "HOME": str(home), "PROVISIONING_DATA_DIR": str(home / "data")}


def provision_command() -> Path:
    """The installed `provision` console script of this environment."""
    script = Path(sys.executable).with_name("provision")
    assert script.is_file(), f"no console script at {script}: is the project installed (uv sync)?"
    return script


def run_provision(
    *args: str, env: dict[str, str], timeout: float = 120, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`provision ARGS` to its end: exit code, stdout and stderr as text."""
    return subprocess.run(
        [str(provision_command()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
    )
