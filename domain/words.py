"""The product's words that the code spells out (design.md, Words): statuses, providers, outcomes."""

from __future__ import annotations

# An employee's sync status (design.md, "Matching and the employee's sync status").
STATUSES = ("synced", "terminated", "non_matching", "unmanaged")

# The providers a tenant can connect through Unified.to.
PROVIDERS = ("entra", "personio", "google")

# How a run ended (the run row's `outcome`).
OUTCOMES = ("running", "succeeded", "failed", "stopped_by_guard", "refused", "skipped_late")
