"""Leave out the source users a tenant suppresses (erased people, design.md "Data protection"), after the filter and
before validation, so that no later stage creates, links, quarantines or reports them.

Set-based: each in-scope user's digests are anti-joined with the list. Making the digests is the one step per
user in Python (HMAC-SHA256 has no polars expression; about 3 µs a user), and only for a tenant whose list is in
force and not empty: every other tenant pays one query. The suppressed users are only counted, never named: not
in the plan, the run changes, the artifacts or the log.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from domain.emails import normalize_email
from domain.suppression import EMAIL, SOURCE_USER, SuppressionKeyError, digest, key_id
from store.db import make_engine
from store.suppressions import read_suppressions, suppression_secret


@dataclass(frozen=True)
class Suppressed:
    users: pl.DataFrame  # the in-scope source users that are not suppressed
    suppressed: int  # in-scope source users left out (a count only)


def suppress_users(tenant: str, users: pl.DataFrame, listed: pl.DataFrame, secret: bytes | None) -> Suppressed:
    """`users` without those whose normalized email or source user id is on the `listed` digests
    (store.suppressions.SUPPRESSION_SCHEMA). `secret` may be None only when nothing is listed."""
    if listed.is_empty():
        return Suppressed(users, 0)
    if secret is None:
        raise SuppressionKeyError(f"Tenant {tenant!r} suppresses erased people, but no secret is configured.")
    foreign = listed.filter(pl.col("key_id") != key_id(secret)).height
    if foreign:
        raise SuppressionKeyError(
            f"Tenant {tenant!r}: {foreign} suppression entries were recorded under another "
            "PROVISIONING_SUPPRESSION_SECRET; restore that secret (this run would otherwise bring erased people back)."
        )

    def email_digest(email: str | None) -> str | None:
        return None if email is None else digest(secret, tenant, EMAIL, normalize_email(email))

    def source_digest(user_id: str | None) -> str | None:
        return None if user_id is None else digest(secret, tenant, SOURCE_USER, user_id)

    hashed = users.with_columns(
        _email_digest=pl.Series([email_digest(e) for e in users.get_column("email")], dtype=pl.String()),
        _source_digest=pl.Series([source_digest(u) for u in users.get_column("user_id")], dtype=pl.String()),
    )
    by_email = listed.select(_email_digest="email_digest").unique()
    by_source = listed.select(_source_digest="source_digest").drop_nulls().unique()
    kept = hashed.join(by_email, on="_email_digest", how="anti").join(by_source, on="_source_digest", how="anti")
    return Suppressed(kept.drop("_email_digest", "_source_digest"), users.height - kept.height)


def suppress_tenant(tenant: str, users: pl.DataFrame) -> Suppressed:
    """The tenant's in-scope users without the suppressed ones, its list read in one query."""
    listed = read_suppressions(make_engine(), tenant)
    return suppress_users(tenant, users, listed, suppression_secret() if not listed.is_empty() else None)


suppress_task = task(name="leave out suppressed people", cache_policy=NO_CACHE, persist_result=False)(suppress_tenant)
