"""Email rules every layer shares: what counts as an address, and the form matching compares."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email


def is_valid_email(address: str) -> bool:
    """email-validator's verdict on syntax alone (no DNS)."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def normalize_email(address: str) -> str:
    """What matching compares: NFC, case-folded, NFC again (case folding can denormalize)."""
    if address.isascii():
        return address.lower()  # casefold == lower for ASCII, and NFC is the identity
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", address).casefold())
