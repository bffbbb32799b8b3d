"""Email rules every layer shares: what counts as an address, which addresses are one mailbox, and the form
matching compares.

One mailbox, one form: matching compares NFC + lower-case (`normalize_email`), so capitals and the
composed or decomposed spelling of a letter never make two people, and nothing folds one mailbox into
another. Case folding did: it maps `ſ` (long s) to `s`, `ﬃ` to `ffi` and `ß` to `ss`, so `ſupport@` matched
the employee `support@`, and a source user `straße@` took over the employee `strasse@` (rule 2 links by email
and then writes the source's address over the employee's). `ß` and `ss` are different mailboxes to every
mail system; lower-case keeps them apart.

Look-alikes are refused, not matched: a local part whose compatibility form (NFKC) differs from its
canonical one (NFC) holds characters such as `ſ`, `ﬃ`, fullwidth letters or superscripts, which some mail
systems fold and others do not, and which read as another person's address. A sync quarantines such a
source user and a hand-made employee is refused (`email_problem`), both with EMAIL_HAS_COMPATIBILITY_CHARACTERS.

The domain is compared the same way (NFC + lower-case) rather than IDNA-mapped: UTS #46 folds compatibility
characters too (fullwidth letters), which would make the form coarser than the one stored before and let
the migration that recomputed it (store/migrations/versions/0009) merge two employees. Every address was
already accepted by email-validator (both doors check its syntax).
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

# Why an address is refused, worded as a sync's report words it. It quotes nothing of the address.
EMAIL_HAS_COMPATIBILITY_CHARACTERS = "email has look-alike characters before the @ (such as ſ, ﬃ or fullwidth letters)"


def is_valid_email(address: str) -> bool:
    """email-validator's verdict on syntax alone (no DNS)."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def normalize_email(address: str) -> str:
    """What matching compares: NFC, lower-cased, NFC again (lower-casing can denormalize, e.g. `İ`).

    Finer than the case-folded form stored before (tests/test_email_identity.py holds it to that for every
    code point), so recomputing stored forms never makes two employees collide.
    """
    if address.isascii():
        return address.lower()  # NFC is the identity on ASCII; sources/normalize.py does this as a column
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", address).lower())


def email_problem(address: str) -> str | None:
    """Why a sync quarantines (and a person may not add) this address beyond its syntax, or None.

    A local part that compatibility normalization changes holds look-alike characters (module docstring).
    Decomposed letters are not look-alikes: NFC, which matching applies, composes them.
    """
    if address.isascii():
        return None
    local = unicodedata.normalize("NFC", address.rpartition("@")[0])
    for form in (local, local.lower()):
        if unicodedata.normalize("NFKC", form) != form:
            return EMAIL_HAS_COMPATIBILITY_CHARACTERS
    return None
