"""The admin API's commands of `provision`: serve, api-key, audit. Registered by cli/main.py."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.common import emit, engine, explained_errors, fail

key_app = typer.Typer(help="Keys of the admin API: shown once, stored as a hash, revocable.", no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the admin API (OpenAPI at /openapi.json, docs at /docs) until interrupted."""
    import uvicorn

    from api.app import create_app
    from settings import get_settings

    settings = get_settings()
    missing = [
        name
        for name, value in (
            ("PROVISIONING_STATE_SECRET", settings.state_secret and settings.state_secret.get_secret_value()),
            ("PROVISIONING_UNIFIED_WORKSPACE_ID", settings.unified_workspace_id),
            ("PROVISIONING_PUBLIC_URL", settings.public_url),
        )
        if not value
    ]
    if missing:
        fail(f"The admin API needs {', '.join(missing)} set before it starts (see the README, Admin API).")
    with explained_errors():
        app = create_app(engine=engine(), settings=settings)
    typer.echo(f"Admin API on http://{host}:{port} (docs: /docs, OpenAPI: /openapi.json)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@key_app.command("create")
def key_create(
    name: Annotated[str, typer.Option(help="A name for the key (the audit log names changes by it).")],
    tenant: Annotated[str | None, typer.Option(help="The one tenant the key may act for.")] = None,
    all_tenants: Annotated[bool, typer.Option("--all-tenants", help="A key for every tenant (the platform).")] = False,
) -> None:
    """Create a key and print it once: it is stored only as a hash."""
    from store.access import create_key

    if (tenant is None) == (not all_tenants):
        fail("Give either --tenant T or --all-tenants.")
    with explained_errors():
        key = create_key(engine(), name, tenant)
    typer.echo(f"Key {name} for {'every tenant' if all_tenants else f'tenant {tenant}'} (shown once, keep it safe):")
    typer.echo(key)


@key_app.command("list")
def key_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every key by name, its tenant, and whether it is revoked (never the key itself)."""
    from store.access import list_keys

    with explained_errors():
        keys = list_keys(engine())

    def render(keys: list[dict[str, Any]]) -> None:
        for k in keys:
            state = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
            typer.echo(f"{k['name']:<30} {k['tenant'] or '(all tenants)':<24} {state}")

    emit(keys, as_json, render)


@key_app.command("revoke")
def key_revoke(name: str) -> None:
    """Revoke a key: every request with it is refused from now on."""
    from store.access import revoke_key

    with explained_errors():
        revoke_key(engine(), name)
    typer.echo(f"Key {name} revoked.")


def audit(
    tenant: str,
    limit: Annotated[int, typer.Option(help="How many entries, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every change made to a tenant through the API or the CLI: when, who, what, old -> new."""
    from store.access import audit_entries

    with explained_errors():
        entries = audit_entries(engine(), tenant, limit=limit)

    def render(entries: list[dict[str, Any]]) -> None:
        for e in entries:
            typer.echo(f"{e['at']}  {e['actor']:<20} {e['action']:<18} {e['old'] or ''} -> {e['new'] or ''}")

    emit(entries, as_json, render)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(key_app, name="api-key")
    app.command()(audit)
