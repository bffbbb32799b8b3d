"""Errors as `application/problem+json` (RFC 9457): one sentence in `detail`, the right status.

An ExplainedError says what went wrong in words written for a person; its kind picks the status:
not found 404, conflict 409, anything else the caller can fix 422. A source that failed is 502. Anything
else is a bug: 500 with no detail beyond its type (the message could hold what no caller may see).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import ConflictError, ExplainedError, NotFoundError, UnavailableError
from sources.errors import SourceError
from sources.hosts import SourceHostError

MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal error",
    502: "The source failed",
    503: "Unavailable",
}


class Problem(Exception):
    """An answer a route gives on purpose: a status and one sentence."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_of(exc: ExplainedError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, SourceHostError):
        return 422
    if isinstance(exc, SourceError):
        return 502
    if isinstance(exc, UnavailableError):
        return 503
    return 422


def _first_error(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "The request is not valid."
    error = errors[0]
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
    message = str(error.get("msg", "is not valid")).rstrip(".")
    return f"{where or 'The request'}: {message}." if where else f"The request: {message}."


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.detail, **exc.extra)

    @app.exception_handler(ExplainedError)
    async def _explained(_request: Request, exc: ExplainedError) -> JSONResponse:
        extra = {"run_id": exc.run_id} if hasattr(exc, "run_id") else {}
        return problem(status_of(exc), str(exc), **extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, _first_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is nothing at this path."
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "The request body is not valid JSON."
        if exc.status_code == 405:
            detail = "This path does not take that method."
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        return problem(500, f"Unexpected {type(exc).__name__}; the service's log has the traceback.")
