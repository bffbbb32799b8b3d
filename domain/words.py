"""The product's words that the code spells out (design.md, Words): statuses, providers, outcomes."""

from __future__ import annotations

# An employee's sync status (design.md, "Matching and the employee's sync status").
STATUSES = ("synced", "terminated", "non_matching", "unmanaged")

# The providers a tenant can connect through Unified.to.
PROVIDERS = ("entra", "personio", "google")

# Each provider's Unified.to `integration_type` slug: the authorization URL names it and a connection
# carries it. The slugs are UNCONFIRMED upstream (upstream-apis.md 1.9, 1.9a), so they live in this one
# mapping on purpose: the product and the simulator both read them from here, and a correction is one line.
INTEGRATION_TYPES: dict[str, str] = {"entra": "microsoftentraid", "personio": "personio", "google": "googleworkspace"}

# How a run ended (the run row's `outcome`).
OUTCOMES = ("running", "succeeded", "failed", "stopped_by_guard", "refused", "skipped_late")
