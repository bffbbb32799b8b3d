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

# Where a run is, or how it ended (the run row's `outcome`): `queued` until it holds the tenant's lock,
# `running` only while it holds it, `abandoned` when the next holder of the lock found it dead
# (store/repo.py abandon_stale_runs).
OUTCOMES = ("queued", "running", "succeeded", "failed", "stopped_by_guard", "refused", "skipped_late", "abandoned")
