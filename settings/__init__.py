"""Typed configuration from the environment (prefix `PROVISIONING_`), and the Unified.to token."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.errors import ExplainedError

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "employee-provisioning"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROVISIONING_", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    # e.g. postgresql+psycopg://user@host:5432/provisioning; default: a SQLite file in data_dir
    database_url: str | None = None
    unified_base_url: str = "https://api.unified.to"
    # Hosts besides Unified.to's own API hosts that the Unified.to token may be sent to (comma-separated).
    allowed_source_hosts: str = ""
    # The most bytes one answer of a source may have (sources/http.py): a page of 100 users is about 30 KB, so
    # 64 MiB never stops an honest source and keeps a broken or hostile one from exhausting the worker's memory.
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # The admin API (`provision serve`): Unified.to's workspace id (its authorization URL names it), the
    # service's own URL as an admin's browser reaches it (for the callback), the secret that signs the
    # `state` of a connect flow, and the URL prefixes the callback may send an admin back to.
    unified_workspace_id: str | None = None
    public_url: str | None = None
    state_secret: SecretStr | None = None
    redirect_allowlist: str = ""
    # Where Prefect sends the alerts of unattended runs that failed or were stopped by the guard (`provision
    # deploy` keeps the automation, deployments/alerts.py): the platform's webhook. A secret, since such URLs
    # often carry a token in their path. Checked where it is used (`alert_webhook`), not here: a mistyped alert
    # URL must not stop every command and every run that reads these settings.
    alert_webhook_url: SecretStr | None = None
    # The key of the suppression list's one-way digests (domain/suppression.py): the same on every host that
    # syncs or erases, kept out of the employee database; needed only by tenants that suppress erased people.
    suppression_secret: SecretStr | None = None

    def alert_webhook(self) -> SecretStr | None:
        """The alert webhook URL, or None when not set; an http(s) URL with a host, else an AlertSettingError."""
        url = self.alert_webhook_url.get_secret_value().strip() if self.alert_webhook_url else ""
        if not url:
            return None
        try:
            parts = urlsplit(url)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # an unclosed [IPv6 address, a port that is no number
            usable = False
        if not usable:  # the value itself is not quoted: it may hold a token
            raise AlertSettingError(
                "PROVISIONING_ALERT_WEBHOOK_URL is not an http(s) URL with a host "
                "(such as https://platform.example/hooks/provisioning)."
            )
        return SecretStr(url)

    def allowed_hosts(self) -> list[str]:
        return [h.strip() for h in self.allowed_source_hosts.split(",") if h.strip()]

    def redirect_prefixes(self) -> list[str]:
        """Where the connect callback may send an admin back: the allow-list, and this service's own
        settings page (`<public URL>/ui/`)."""
        listed = [u.strip() for u in self.redirect_allowlist.split(",") if u.strip()]
        own_page = [self.public_url.rstrip("/") + "/ui/"] if self.public_url else []
        return listed + own_page


class UnifiedCredentials(BaseSettings):
    """The Unified.to workspace token: from `UNIFIED_API_TOKEN`, else a Prefect Secret block."""

    model_config = SettingsConfigDict(extra="ignore")

    unified_api_token: SecretStr | None = Field(default=None)


class AlertSettingError(ExplainedError):
    """The alert webhook URL cannot work."""


def get_settings() -> Settings:
    return Settings()


# The schemes libpq and most hosting platforms hand out for PostgreSQL. SQLAlchemy knows no `postgres` dialect
# and reads a bare `postgresql://` as psycopg2, which is not installed: both mean the psycopg 3 driver here.
POSTGRES_SCHEMES = ("postgres://", "postgresql://")
POSTGRES_DRIVER_SCHEME = "postgresql+psycopg://"


def database_url(settings: Settings | None = None) -> str:
    """The employee database's SQLAlchemy URL: `PROVISIONING_DATABASE_URL`, else a SQLite file in the data dir.

    A `postgres://` or `postgresql://` URL is read as `postgresql+psycopg://` (the one driver installed).
    """
    settings = settings or get_settings()
    if not settings.database_url:
        return f"sqlite:///{settings.data_dir / 'provisioning.db'}"
    url = settings.database_url.strip()
    for scheme in POSTGRES_SCHEMES:
        if url.lower().startswith(scheme):
            return POSTGRES_DRIVER_SCHEME + url[len(scheme) :]
    return url


SECRET_BLOCK_NAME = "unified-api-token"


class MissingTokenError(ExplainedError):
    """No Unified.to token is configured."""


def prefect_api_configured() -> bool:
    """Whether a Prefect server is named (`PREFECT_API_URL`, from the environment or the Prefect profile)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL"))


def unified_token() -> SecretStr:
    """The Unified.to workspace token: `UNIFIED_API_TOKEN`, else the Prefect Secret block `unified-api-token` on
    the Prefect server `PREFECT_API_URL` names (with none named, a missing variable is said at once).

    Unwrapped only where the Authorization header is built; never logged, stored or returned.
    """
    token = UnifiedCredentials().unified_api_token
    if token is not None and token.get_secret_value():
        return token
    if not prefect_api_configured():
        # Without a server to ask, Prefect would start a temporary one (15-20 s) only to find no block there.
        raise MissingTokenError(
            "UNIFIED_API_TOKEN is not set (and without PREFECT_API_URL there is no Prefect server to read the "
            f"Secret block {SECRET_BLOCK_NAME!r} from): set UNIFIED_API_TOKEN to the Unified.to workspace API token."
        )
    try:
        from prefect.blocks.system import Secret

        block = cast(Secret[str], Secret.load(SECRET_BLOCK_NAME))
        return SecretStr(str(block.get()))
    except Exception as exc:  # no server, no block: both mean "not configured"
        raise MissingTokenError(
            "No Unified.to API token: set UNIFIED_API_TOKEN or create the Prefect Secret block "
            f"{SECRET_BLOCK_NAME!r} ({type(exc).__name__} when loading it)."
        ) from None
