"""Typed source errors, sorted into transient (worth retrying) and permanent (fail at once).

Messages name the tenant and the cause, never a token or a personal attribute.
"""

from __future__ import annotations

from domain.errors import ExplainedError


class SourceError(ExplainedError):
    """Base of every error a source client raises."""

    transient: bool = False

    def __init__(self, message: str, *, tenant: str, status: int | None = None) -> None:
        super().__init__(f"tenant {tenant}: {message}")
        self.tenant = tenant
        self.status = status


class TransientSourceError(SourceError):
    """Rate limits, 5xx, timeouts, dropped connections: still failing after the client's own retries."""

    transient = True


class PermanentSourceError(SourceError):
    """Retrying cannot help: bad credentials, unknown connection, bad request, unreadable payload."""


class SourceAuthError(PermanentSourceError):
    """401 or 403: the token is wrong, expired, or lacks permission; or the connection is paused."""


class SourceNotFoundError(PermanentSourceError):
    """404: the connection id (or the endpoint) does not exist."""


class SourceRequestError(PermanentSourceError):
    """400 and other 4xx: the request was refused as malformed."""


class SourceNotSupportedError(SourceRequestError):
    """501: the integration behind the connection does not support the object (Personio has no group list)."""


class MalformedPayloadError(PermanentSourceError):
    """The body is not the JSON array the API promises."""


class ResponseTooLargeError(PermanentSourceError):
    """An answer longer than the client's byte cap (PROVISIONING_MAX_RESPONSE_BYTES): a broken or hostile source.
    Permanent: asking again gets the same answer, and reading it would hold it all in memory.
    """


class PageLimitError(PermanentSourceError):
    """A listing did not end within the client's page cap: the source may be ignoring `offset`."""


class InconsistentListingError(TransientSourceError):
    """The listing changed under the client on every read (ids repeated across pages, pages disagreeing
    on the total): the source was being edited while paged. Transient: once it is still, a run reads it whole.
    """


class IncompleteListingError(PermanentSourceError):
    """Reads agree with each other yet hold fewer records than the source's X-Total-Count announces (or a
    short page is followed by more records): a page goes missing every time. Permanent: no retry can
    read the missing records, and a partial listing would flag their employees `non_matching`.
    """
