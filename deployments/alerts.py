"""Keep Prefect's alert automation in step with the setting, so the platform hears of unattended runs that
failed or were stopped by the guard (flows/alerts.py emits their events).

With `PROVISIONING_ALERT_WEBHOOK_URL` set there is exactly one automation AUTOMATION_NAME: an event trigger
on the two alert events (reactive, one event is enough, so every run's event fires it once) whose action
sends a notification through the Custom Webhook block BLOCK_NAME, which POSTs the message (MESSAGE, a
JSON object) to that URL. The URL is kept in the block's secrets, which the UI shows masked.
Without the setting neither exists. The automation is known by its name (it is the one that name stands
for, whoever made it), so a second automation of that name is deleted.

Idempotent: a block or automation that already matches is left alone; a changed URL updates the block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import SecretStr

from flows.alerts import EVENTS, PAYLOAD_FIELDS, tenant_resource_id

AUTOMATION_NAME = "provisioning-sync-alerts"
BLOCK_NAME = "provisioning-alerts"
SLUG = "custom-webhook"  # Prefect's CustomWebhookNotificationBlock
_URL_SECRET = "alert_url"  # the block's secret that its URL template names


def _message_template() -> str:
    """The body Prefect renders for each alert: a JSON object of the event's name, id and time and the
    payload's fields (tenant, run id, trigger, outcome, failed stage, error sentence); `tojson` quotes them."""
    fields = [
        '"event": {{ event.event | tojson }}',
        '"event_id": {{ event.id | string | tojson }}',  # the same alert delivered twice carries one id
        '"occurred": {{ event.occurred.isoformat() | tojson }}',
    ]
    # `default(none)`: a field the event lacks (one emitted by hand, say) is null rather than a failed render
    fields += [f'"{name}": {{{{ event.payload.{name} | default(none) | tojson }}}}' for name in PAYLOAD_FIELDS]
    return "{" + ", ".join(fields) + "}"


MESSAGE = _message_template()
# What the UI shows for the action; the webhook block itself sends the body only.
SUBJECT = "Employee sync of tenant {{ event.payload.tenant }}: {{ event.payload.outcome }}"


@dataclass(frozen=True)
class AlertsReconciled:
    state: str  # created, updated, unchanged, removed, or off (no URL set and nothing to remove)
    target: str | None  # where alerts go, without path or query (they may hold a token)

    def describe(self) -> str:
        """One line for `provision deploy`."""
        if self.target is None:
            removed = f"the automation {AUTOMATION_NAME} was removed, " if self.state == "removed" else ""
            return f"PROVISIONING_ALERT_WEBHOOK_URL is not set; {removed}no alerts are sent"
        return f"the automation {AUTOMATION_NAME} sends failed and guard-stopped unattended runs to {self.target}"


def redacted(url: str) -> str:
    """Scheme, host and port of a webhook URL; its path and query may carry a token."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    tail = "/..." if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{tail}"


def _block(url: SecretStr) -> Any:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock.model_validate(
        {
            "name": "employee provisioning alerts",
            "url": "{{" + _URL_SECRET + "}}",
            "method": "POST",
            "headers": {"Content-Type": "application/json"},
            "form_data": "{{body}}",  # a string: sent as the request body itself, the JSON object MESSAGE renders
            "secrets": {_URL_SECRET: url.get_secret_value()},
        }
    )


def _ensure_block(client: Any, url: SecretStr) -> tuple[UUID, bool]:
    """The notification block's id, and whether it was created or changed. Read as a document, not with
    `Block.load`, which emits a "block loaded" event on every `provision deploy`."""
    from prefect.exceptions import ObjectNotFound

    wanted = _block(url)
    data = wanted.model_dump(mode="json", context={"include_secrets": True})
    try:
        document = client.read_block_document_by_name(BLOCK_NAME, block_type_slug=SLUG, include_secrets=True)
    except ObjectNotFound:
        document = None
    if document is not None and all(document.data.get(k) == v for k, v in data.items() if k != "block_type_slug"):
        return document.id, False
    return wanted.save(BLOCK_NAME, overwrite=True), True


def _automation(block_id: UUID) -> Any:
    from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification

    return AutomationCore(
        name=AUTOMATION_NAME,
        description="Employee provisioning: an unattended sync failed or was stopped by the mass-change guard. "
        "Kept by `provision deploy`.",
        enabled=True,
        trigger=EventTrigger(
            expect=set(EVENTS.values()),
            match={"prefect.resource.id": tenant_resource_id("*")},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=MESSAGE)],
    )


def _same_automation(existing: Any, wanted: Any) -> bool:
    """What this module sets, compared as JSON (the server adds ids of its own, and sets have no order)."""
    keep = {"name", "description", "enabled", "trigger", "actions", "actions_on_trigger", "actions_on_resolve"}

    def settled(automation: Any) -> dict[str, Any]:
        dumped: dict[str, Any] = automation.model_dump(mode="json", include=keep)
        trigger = dumped["trigger"]
        for name in ("expect", "after", "for_each"):
            trigger[name] = sorted(trigger.get(name) or [])
        return dumped

    return settled(existing) == settled(wanted)


def reconcile_alerts(url: SecretStr | None) -> AlertsReconciled:
    """Make Prefect's alert automation and its block match the setting (`Settings.alert_webhook()`)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(AUTOMATION_NAME)
        if url is None:
            for automation in existing:
                client.delete_automation(automation.id)
            block_removed = _delete_block(client)
            return AlertsReconciled("removed" if existing or block_removed else "off", None)
        block_id, block_changed = _ensure_block(client, url)
        wanted = _automation(block_id)
        current, extra = (existing[0], existing[1:]) if existing else (None, [])
        for automation in extra:
            client.delete_automation(automation.id)
        if current is None:
            client.create_automation(wanted)
            state = "created"
        elif _same_automation(current, wanted) and not extra:
            state = "updated" if block_changed else "unchanged"
        else:
            client.update_automation(current.id, wanted)
            state = "updated"
    return AlertsReconciled(state, redacted(url.get_secret_value()))


def _delete_block(client: Any) -> bool:
    from prefect.exceptions import ObjectNotFound

    try:
        document = client.read_block_document_by_name(BLOCK_NAME, block_type_slug=SLUG)
    except ObjectNotFound:
        return False
    client.delete_block_document(document.id)
    return True
