"""`provision demo`: the main job on embedded defaults, end to end, in well under a minute.

Serves the Unified.to simulator with a generated tenant, creates a tenant with a few employees of its
own, connects, selects two departments, syncs; then changes the source (an email change, a disabled
user, a user moved out of the selected groups, a new hire) and syncs again.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from settings import get_settings

TENANT = "acme"
CONNECTION_ID = "conn-acme"
TOKEN = "sim-token"  # the simulator's own fake token


def _groups_under(dataset: dict[str, Any], roots: set[str]) -> set[str]:
    """The given group ids and every group below them."""
    inside = set(roots)
    grew = True
    while grew:
        below = {g["id"] for g in dataset["groups"] if g.get("parent_id") in inside} - inside
        inside |= below
        grew = bool(below)
    return inside


def _members(dataset: dict[str, Any], roots: set[str]) -> set[str]:
    """User ids in the given groups or any group below them."""
    inside = _groups_under(dataset, roots)
    return {uid for g in dataset["groups"] if g["id"] in inside for uid in g.get("user_ids", [])}


def _work_email(record: dict[str, Any]) -> str:
    emails = record["emails"]
    return next((e["email"] for e in emails if e["type"] == "WORK"), emails[0]["email"])


def _write(path: Path, dataset: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataset, ensure_ascii=False))
    tmp.replace(path)  # the simulator sees the whole new file or the old one, never half of it


def change_source(dataset: dict[str, Any], selected: set[str]) -> dict[str, str]:
    """Apply the four changes of the second sync; returns what changed, by source user id."""
    by_id = {e["id"]: e for e in dataset["employees"]}
    in_scope = _members(dataset, selected)
    # Four active in-scope people with a WORK address, each a team member.
    teams = {g["id"]: g for g in dataset["groups"] if g.get("type") == "TEAM"}
    team_of = {uid: t["id"] for t in teams.values() for uid in t.get("user_ids", [])}
    picks = [
        uid
        for uid in sorted(in_scope)
        if by_id[uid]["employment_status"] == "ACTIVE"
        and uid in team_of
        and any(e["type"] == "WORK" for e in by_id[uid]["emails"])
    ][5:9]
    renamed, disabled, moved, _ = picks

    for email in by_id[renamed]["emails"]:
        if email["type"] == "WORK":
            local, domain = email["email"].split("@")
            email["email"] = f"{local}.neu@{domain}"
    by_id[disabled]["employment_status"] = "INACTIVE"
    outside = next(t for t in teams.values() if t["id"] not in _groups_under(dataset, selected))
    teams[team_of[moved]]["user_ids"].remove(moved)
    outside["user_ids"].append(moved)
    by_id[moved].pop("groups", None)
    hire_team = teams[team_of[picks[3]]]
    hire: dict[str, Any] = {
        "id": "emp_demo_new_hire",
        "name": "Zoë Schäfer",
        "first_name": "Zoë",
        "last_name": "Schäfer",
        "emails": [{"email": "zoe.schaefer@firma.example", "type": "WORK"}],
        "employment_status": "ACTIVE",
        "employment_type": "FULL_TIME",
        "title": "Werkstudentin",
    }
    dataset["employees"].append(hire)
    hire_team["user_ids"].append(hire["id"])
    return {
        renamed: "email changed",
        disabled: "disabled",
        moved: "moved out of the selected groups",
        hire["id"]: "new hire",
    }


def run_demo(users: int = 300, serve_port: int | None = None) -> int:
    from simulator.app import create_app
    from simulator.generator import generate_dataset
    from simulator.serve import running_simulator
    from simulator.source import SimulatorSource

    started = time.monotonic()
    db_path = get_settings().data_dir / "demo.db"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    os.environ["PROVISIONING_DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ["UNIFIED_API_TOKEN"] = TOKEN

    from cli.common import render_counts
    from flows.sync_tenant import sync_tenant
    from pipeline import refresh_groups
    from store.db import make_engine
    from store.repo import (
        add_employee,
        add_tenant,
        connect,
        integration_settings,
        list_employees,
        select_groups,
        status_totals,
    )

    dataset = generate_dataset(users, seed=2026)
    departments = [g for g in dataset["groups"] if g.get("type") == "DEPARTMENT"]
    selected = {departments[0]["id"], departments[1]["id"]}
    by_id = {e["id"]: e for e in dataset["employees"]}
    in_scope = sorted(_members(dataset, selected))

    with tempfile.TemporaryDirectory() as tmp:
        source_file = Path(tmp) / "source.json"
        _write(source_file, dataset)
        app = create_app(SimulatorSource(path=source_file), connection_id=CONNECTION_ID, token=TOKEN)
        with running_simulator(app) as base_url:
            typer.echo(f"Simulator of Unified.to at {base_url}: {users} users; database {db_path}\n")
            engine = make_engine()
            add_tenant(engine, TENANT, "ACME GmbH")
            # Employees the platform already had: three of them typed with other capitalisation.
            active = [u for u in in_scope if by_id[u]["employment_status"] == "ACTIVE"]
            for n, uid in enumerate(active[:4]):
                email = _work_email(by_id[uid])
                add_employee(
                    engine,
                    TENANT,
                    email=email.upper() if n < 3 else email,
                    first_name=by_id[uid]["first_name"],
                    last_name=by_id[uid]["last_name"],
                )
            add_employee(engine, TENANT, email="ehemalig@firma.example", first_name="Erika", last_name="Ehemalig")
            typer.echo("Tenant acme created with 5 employees (4 also in the source, 3 of them in other case).")

            connect(engine, TENANT, provider="entra", connection_id=CONNECTION_ID, base_url=base_url)
            listed = refresh_groups(engine, integration_settings(engine, TENANT, require_selection=False))
            chosen = listed.filter(listed["group_id"].is_in(list(selected)))
            typer.echo(f"Connected; the source lists {listed.height} groups. Selected:")
            for row in chosen.iter_rows(named=True):
                typer.echo(f"  {row['group_id']}  {row['name']} ({row['member_count']} members, teams included)")
            select_groups(engine, TENANT, sorted(selected), all_users=False)

            typer.echo("\n== Sync 1: first sync (matches by email, then links by id)")
            render_counts(sync_tenant(TENANT, trigger="cli"))

            changes = change_source(dataset, selected)
            _write(source_file, dataset)
            typer.echo("\nThe source changes:")
            for uid, what in changes.items():
                typer.echo(f"  {uid}: {what}")

            typer.echo("\n== Sync 2: after the changes")
            render_counts(sync_tenant(TENANT, trigger="cli"))

            typer.echo("\nEmployees by status:")
            for status, n in sorted(status_totals(engine, TENANT).items()):
                typer.echo(f"  {status:<13} {n}")
            for status in ("terminated", "non_matching"):
                for row in list_employees(engine, TENANT, status):
                    typer.echo(f"  {status:<13} {row['email']} (link {row['link']})")
            typer.echo(
                f"\nDone in {time.monotonic() - started:.1f} s. Explore it with "
                f"PROVISIONING_DATABASE_URL=sqlite:///{db_path} uv run provision employees {TENANT}"
            )
            if serve_port is not None:
                serve_page(engine, base_url, serve_port)
    return 0


def serve_page(engine: Any, simulator_url: str, port: int) -> None:
    """The settings page on the demo tenant, with the simulator as Unified.to, until interrupted."""
    import secrets

    import uvicorn
    from pydantic import SecretStr

    from api.app import create_app as create_api
    from store.access import create_key

    public = f"http://127.0.0.1:{port}"
    settings = get_settings().model_copy(
        update={
            "unified_base_url": simulator_url,
            "unified_workspace_id": "ws-sim",
            "state_secret": SecretStr(secrets.token_urlsafe(32)),
            "public_url": public,
        }
    )
    key = create_key(engine, "demo-settings-page", TENANT)
    typer.echo(f"\nThe settings page of tenant {TENANT}: {public}/ui  (Ctrl-C stops it)")
    typer.echo(f"Sign in with this key: {key}")
    uvicorn.run(create_api(engine=engine, settings=settings), host="127.0.0.1", port=port, log_level="warning")
