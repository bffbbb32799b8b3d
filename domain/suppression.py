"""The one-way keys of the suppression list: an erased person whom later syncs neither create nor link.

What is kept of an erased person is HMAC-SHA256 of their normalized email (and of their source user id, if they
were linked), keyed with a per-deployment secret (`PROVISIONING_SUPPRESSION_SECRET`) that never enters the
employee database. Chosen over SHA-256 with a per-tenant salt: an email address is easy to guess, and a salt
stored beside its hashes lets anyone who reads the database (a backup, a replica) confirm a guess in
microseconds. Without the secret the stored digests confirm nothing. Its price: every process that syncs or
erases needs the secret, and a changed secret would silently void the list, so each entry carries the secret's
fingerprint (`key_id`) and a run refuses to sync a tenant whose list was recorded under another secret.

The tenant id is part of the message: one person erased in two tenants leaves two unrelated digests, so the
list links nobody across tenants. So is `domain.emails.normalize_email`'s form of the address: a change to it
that changes an address's form voids that entry's email digest (no migration can recompute a digest of an address
it does not hold); the source id digest of a linked person still holds.
"""

from __future__ import annotations

import hashlib
import hmac

from domain.errors import ExplainedError

EMAIL = "email"
SOURCE_USER = "source_user_id"
_KEY_ID_MESSAGE = b"provisioning-suppression-key-id"


class SuppressionKeyError(ExplainedError):
    """The suppression list cannot be used as configured: no secret, or not the one the list was recorded with."""


def digest(secret: bytes, tenant: str, kind: str, value: str) -> str:
    """HMAC-SHA256 (hex) of one identifier of one person in one tenant; `kind` is EMAIL or SOURCE_USER."""
    message = "\x1f".join((tenant, kind, value)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def key_id(secret: bytes) -> str:
    """A short fingerprint of the secret (itself an HMAC, so it reveals nothing of the secret)."""
    return hmac.new(secret, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]
