"""The settings page: the product's reference front-end, served by `provision serve` under `/ui`.

Every page is rendered on the server from admin API calls, made over HTTP through the service's own ASGI
interface with the signed-in session's key, so a platform team sees here every call its own front-end
must make (`AdminApi` below is the whole list) and the page reaches nothing the API does not offer.

Signing in trades a tenant's key for a session's key (`POST /sessions`, hours, that tenant only) kept in
an HttpOnly, SameSite=Strict cookie; every form carries a CSRF token derived from it; signing out revokes
it (`DELETE /sessions/current`). The tenant in a page's URL is passed to the API as it is: the API's own
scope check answers another tenant's pages with its 404.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from domain.words import PROVIDERS, STATUSES

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "provisioning_session"
SIGN_IN_COOKIE = "provisioning_sign_in"
HOME_COOKIE = "provisioning_home"  # the signed-in tenant, for the links of an error page (never for access)
PAGE_SIZE = 50
MAX_FORM_BYTES = 64 * 1024
PROVIDER_NAMES = {"entra": "Microsoft Entra ID", "personio": "Personio", "google": "Google Workspace"}
NOTICES = {  # fixed sentences a redirect may name, so a crafted URL cannot put words on the page
    "saved": "Settings saved.",
    "groups_read": "The group list was read from the source just now.",
    "deleted": "The employee was deleted.",
    "signed_out": "You are signed out.",
    "session_ended": "Your session ended; sign in again.",
}

templates = Jinja2Templates(directory=HERE / "templates")


def when(value: str | None) -> str:
    """An API time (ISO 8601 with offset) as a person reads it: `2026-11-29 15:36 UTC`."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["when"] = when


class PageError(Exception):
    """An API answer the page shows as it is: the status and the API's one sentence."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class SignedOut(Exception):
    """No session, or one the API no longer accepts: back to the sign-in page."""


@dataclass
class AdminApi:
    """The admin API as the page calls it, with one key (a tenant's, to sign in; else the session's)."""

    app: FastAPI
    key: str

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin-api", timeout=120) as client:
            answer = await client.request(method, path, headers={"Authorization": f"Bearer {self.key}"}, **kwargs)
        if answer.status_code == 401:
            raise SignedOut()
        if answer.status_code >= 400:
            detail = answer.json().get("detail", answer.reason_phrase) if answer.content else answer.reason_phrase
            raise PageError(answer.status_code, str(detail))
        return answer.json() if answer.content else None


def q(segment: str) -> str:
    """A page's path value as one segment of an API path, whatever it holds."""
    return quote(segment, safe="")


def csrf_token(request: Request, secret_input: str) -> str:
    secret = request.app.state.settings.state_secret
    key = (secret.get_secret_value() if secret else "") + "|csrf"
    return hmac.new(key.encode(), secret_input.encode(), hashlib.sha256).hexdigest()[:40]


async def form_of(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PageError(413, f"The form is over {MAX_FORM_BYTES} bytes.")
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def first(form: dict[str, list[str]], name: str, default: str = "") -> str:
    return form.get(name, [default])[0]


def session_key(request: Request) -> str:
    key = request.cookies.get(SESSION_COOKIE)
    if not key:
        raise SignedOut()
    return key


def api_of(request: Request) -> AdminApi:
    return AdminApi(request.app, session_key(request))


async def checked_form(request: Request) -> dict[str, list[str]]:
    """The posted form, if it carries this session's CSRF token; else nothing of it is used."""
    form = await form_of(request)
    expected = csrf_token(request, session_key(request))
    if not hmac.compare_digest(first(form, "csrf"), expected):
        raise PageError(403, "The form is missing its security token or it is stale; reload the page and try again.")
    return form


def secure(request: Request) -> bool:
    public = request.app.state.settings.public_url or ""
    return public.startswith("https://") or request.url.scheme == "https"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    key = request.cookies.get(SESSION_COOKIE)
    context.setdefault("csrf", csrf_token(request, key) if key else "")
    context.setdefault("notice", NOTICES.get(request.query_params.get("done", "")))
    context.setdefault("tenant", None)
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def back_to(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def install(app: FastAPI) -> None:
    """Add the page's routes under /ui (not in the OpenAPI document: they are the API's client)."""
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.exception_handler(SignedOut)
    async def _signed_out(request: Request, _exc: SignedOut) -> Response:
        done = "session_ended" if request.cookies.get(SESSION_COOKIE) else None
        response = back_to("/ui" + (f"?done={done}" if done else ""))
        response.delete_cookie(SESSION_COOKIE, path="/ui")
        return response

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        home = request.cookies.get(HOME_COOKIE)  # not the tenant of the path, which may be another's
        return render(request, "error.html", status_code=exc.status, error=exc.detail, tenant=home)

    _routes(app)


def _routes(app: FastAPI) -> None:
    @app.get("/ui", include_in_schema=False)
    async def sign_in_page(request: Request) -> Response:
        nonce = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(16)
        response = render(request, "sign_in.html", csrf=csrf_token(request, "sign-in:" + nonce))
        response.set_cookie(
            SIGN_IN_COOKIE, nonce, httponly=True, samesite="strict", secure=secure(request), path="/ui", max_age=3600
        )
        return response

    @app.post("/ui/sign-in", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        form = await form_of(request)
        nonce = request.cookies.get(SIGN_IN_COOKIE, "")
        if not nonce or not hmac.compare_digest(first(form, "csrf"), csrf_token(request, "sign-in:" + nonce)):
            raise PageError(403, "The sign-in form is stale; reload the page and sign in again.")
        key = first(form, "key").strip()
        try:
            if not key:
                raise PageError(422, "Enter your API key.")
            session = await AdminApi(app, key).call("POST", "/sessions")
        except (SignedOut, PageError) as exc:
            error = "That key is not valid (unknown or revoked)." if isinstance(exc, SignedOut) else exc.detail
            return render(request, "sign_in.html", status_code=422, error=error, csrf=first(form, "csrf"))
        response = back_to(f"/ui/t/{session['tenant']}")
        response.set_cookie(
            SESSION_COOKIE,
            session["key"],
            httponly=True,
            samesite="strict",
            secure=secure(request),
            path="/ui",
            max_age=8 * 3600,
        )
        response.set_cookie(
            HOME_COOKIE, session["tenant"], httponly=True, samesite="strict", secure=secure(request), path="/ui"
        )
        response.delete_cookie(SIGN_IN_COOKIE, path="/ui")
        return response

    @app.post("/ui/sign-out", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        await checked_form(request)
        with contextlib.suppress(SignedOut):  # ended already
            await api_of(request).call("DELETE", "/sessions/current")
        response = back_to("/ui?done=signed_out")
        response.delete_cookie(SESSION_COOKIE, path="/ui")
        response.delete_cookie(HOME_COOKIE, path="/ui")
        return response

    @app.get("/ui/t/{tenant}", include_in_schema=False)
    async def integration_page(request: Request, tenant: str) -> Response:
        back_from_provider = "connected" in request.query_params or "error" in request.query_params
        if back_from_provider and SESSION_COOKIE not in request.cookies and "again" not in request.query_params:
            # The provider's redirect is a cross-site navigation, on which a SameSite=Strict cookie is not
            # sent; the same URL asked again from this page is same-site, and the cookie comes along.
            return render(request, "back.html", again=str(request.url.include_query_params(again="1")))
        api = api_of(request)
        integration = await api.call("GET", f"/tenants/{q(tenant)}/integration")
        tenant_row = await api.call("GET", f"/tenants/{q(tenant)}")
        context: dict[str, Any] = {
            "tenant": tenant,
            "tenant_name": tenant_row["name"],
            "integration": integration,
            "providers": [(p, PROVIDER_NAMES.get(p, p)) for p in PROVIDERS],
            "provider_name": PROVIDER_NAMES.get(integration.get("provider") or "", integration.get("provider")),
            "connected": request.query_params.get("connected"),
            "connect_error": request.query_params.get("error"),
            "disconnected": request.query_params.get("disconnected"),
        }
        if integration["state"] == "active":
            settings = await api.call("GET", f"/tenants/{q(tenant)}/settings")
            groups_error = None
            # The list the last read of the source stored: a large tenant's source takes seconds to read, so
            # the page reads it fresh only when nothing is stored yet, or when the admin asks.
            groups = await api.call("GET", f"/tenants/{q(tenant)}/groups", params={"fresh": "false"})
            if not groups:
                try:
                    groups = await api.call("GET", f"/tenants/{q(tenant)}/groups")
                except PageError as exc:
                    groups_error = exc.detail
            names = {g["group_id"]: g["name"] or g["group_id"] for g in groups}
            context.update(
                groups_read=min((g["refreshed_at"] for g in groups if g.get("refreshed_at")), default=None),
                settings=settings,
                schedule=schedule_form(settings["schedule"]),
                groups=[{**g, "parent_name": names.get(g["parent_id"] or "")} for g in groups],
                groups_error=groups_error,
                selected=set(settings["group_ids"]),
            )
        return render(request, "integration.html", **context)

    @app.post("/ui/t/{tenant}/connect", include_in_schema=False)
    async def connect(request: Request, tenant: str) -> Response:
        form = await checked_form(request)
        provider = first(form, "provider")
        if provider not in PROVIDERS:
            raise PageError(422, "Choose a provider to connect.")
        return_url = (request.app.state.settings.public_url or str(request.base_url)).rstrip("/") + f"/ui/t/{tenant}"
        made = await api_of(request).call(
            "POST",
            f"/tenants/{q(tenant)}/integration/authorization",
            json={"provider": provider, "return_url": return_url},
        )
        return back_to(made["url"])

    @app.post("/ui/t/{tenant}/groups", include_in_schema=False)
    async def refresh_groups(request: Request, tenant: str) -> Response:
        """Read the group list from the source now (seconds for a large tenant), then back to the settings."""
        await checked_form(request)
        await api_of(request).call("GET", f"/tenants/{q(tenant)}/groups")
        return back_to(f"/ui/t/{tenant}?done=groups_read")

    @app.post("/ui/t/{tenant}/settings", include_in_schema=False)
    async def save_settings(request: Request, tenant: str) -> Response:
        form = await checked_form(request)
        body: dict[str, Any] = {"schedule": schedule_body(form), "sync": first(form, "action") == "save_sync"}
        if first(form, "policy"):
            body["policy"] = policy_body(form)
        if first(form, "all_users"):
            body["all_users"] = True
        else:
            body["group_ids"] = form.get("group", [])
            if not body["group_ids"]:
                raise PageError(422, 'Choose at least one group, or "All users".')
        saved = await api_of(request).call("PUT", f"/tenants/{q(tenant)}/settings", json=body)
        if saved.get("run"):
            return back_to(f"/ui/t/{tenant}/runs/{saved['run']['run_id']}")
        return back_to(f"/ui/t/{tenant}?done=saved")

    @app.post("/ui/t/{tenant}/syncs", include_in_schema=False)
    async def sync_now(request: Request, tenant: str) -> Response:
        await checked_form(request)
        started = await api_of(request).call("POST", f"/tenants/{q(tenant)}/syncs", json={})
        return back_to(f"/ui/t/{tenant}/runs/{started['run_id']}")

    @app.get("/ui/t/{tenant}/runs", include_in_schema=False)
    async def runs_page(request: Request, tenant: str) -> Response:
        listed = await api_of(request).call("GET", f"/tenants/{q(tenant)}/runs", params={"limit": 50})
        return render(request, "runs.html", tenant=tenant, runs=listed["runs"])

    @app.get("/ui/t/{tenant}/runs/{run_id}", include_in_schema=False)
    async def run_page(request: Request, tenant: str, run_id: str) -> Response:
        offset = page_offset(request)
        api = api_of(request)
        run = await api.call("GET", f"/tenants/{q(tenant)}/runs/{q(run_id)}")
        changes = await api.call(
            "GET", f"/tenants/{q(tenant)}/runs/{q(run_id)}/changes", params={"offset": offset, "limit": PAGE_SIZE}
        )
        return render(request, "run.html", tenant=tenant, run=run, changes=changes, pages=paging(changes))

    @app.get("/ui/t/{tenant}/runs/{run_id}/status", include_in_schema=False)
    async def run_status(request: Request, tenant: str, run_id: str) -> Response:
        """What the run page polls while a run is queued or running (outcome and counts, nothing personal)."""
        run = await api_of(request).call("GET", f"/tenants/{q(tenant)}/runs/{q(run_id)}")
        keys = ("outcome", "failed_stage", "error", "counts")
        return JSONResponse({k: run[k] for k in keys})

    @app.get("/ui/t/{tenant}/employees", include_in_schema=False)
    async def employees_page(request: Request, tenant: str) -> Response:
        status = request.query_params.get("status", "")
        search = request.query_params.get("q", "")
        params: dict[str, Any] = {"offset": page_offset(request), "limit": PAGE_SIZE}
        if status:
            params["status"] = status
        if search:
            params["q"] = search
        listed = await api_of(request).call("GET", f"/tenants/{q(tenant)}/employees", params=params)
        return render(
            request,
            "employees.html",
            tenant=tenant,
            listed=listed,
            status=status,
            search=search,
            statuses=STATUSES,
            pages=paging(listed, status=status, q=search),
        )

    @app.get("/ui/t/{tenant}/employees/{employee_id}/delete", include_in_schema=False)
    async def confirm_delete(request: Request, tenant: str, employee_id: int) -> Response:
        api_of(request)  # signed in, or back to the sign-in page
        return render(
            request,
            "confirm.html",
            tenant=tenant,
            title="Delete this employee?",
            text="The employee is deleted from the training platform. It cannot be undone.",
            action=f"/ui/t/{tenant}/employees/{employee_id}/delete",
            button="Delete employee",
            cancel=f"/ui/t/{tenant}/employees",
        )

    @app.post("/ui/t/{tenant}/employees/{employee_id}/delete", include_in_schema=False)
    async def delete_employee(request: Request, tenant: str, employee_id: int) -> Response:
        await checked_form(request)
        await api_of(request).call("DELETE", f"/tenants/{q(tenant)}/employees/{employee_id}")
        return back_to(f"/ui/t/{tenant}/employees?done=deleted")

    @app.get("/ui/t/{tenant}/disconnect", include_in_schema=False)
    async def confirm_disconnect(request: Request, tenant: str) -> Response:
        api_of(request)
        return render(
            request,
            "confirm.html",
            tenant=tenant,
            title="Disconnect the integration?",
            text=(
                "Syncing stops and the connection at Unified.to is deleted. Your employees stay on the "
                "training platform, no longer managed by the integration."
            ),
            action=f"/ui/t/{tenant}/disconnect",
            button="Disconnect",
            cancel=f"/ui/t/{tenant}",
        )

    @app.post("/ui/t/{tenant}/disconnect", include_in_schema=False)
    async def disconnect(request: Request, tenant: str) -> Response:
        await checked_form(request)
        done = await api_of(request).call("DELETE", f"/tenants/{q(tenant)}/integration")
        return back_to(f"/ui/t/{tenant}?" + urlencode({"disconnected": done["employees_unmanaged"]}))


# ---- form and paging helpers ------------------------------------------------------------------------


def schedule_form(schedule: dict[str, Any] | None) -> dict[str, Any]:
    """The schedule as the form shows it: off, every N hours, or cron with its time zone."""
    if schedule is None:
        return {"kind": "off", "hours": 24, "cron": "", "timezone": "Europe/Berlin"}
    if schedule["interval_seconds"]:
        hours = max(1, schedule["interval_seconds"] // 3600)
        return {"kind": "every", "hours": hours, "cron": "", "timezone": schedule["timezone"] or "Europe/Berlin"}
    return {"kind": "cron", "hours": 24, "cron": schedule["cron"], "timezone": schedule["timezone"] or "UTC"}


def policy_body(form: dict[str, list[str]]) -> dict[str, Any]:
    """The deprovisioning policy as the form gives it; the API checks the mode and the range of days."""
    days = first(form, "grace_days", "30").strip()
    if not days.isdigit():
        raise PageError(422, "The days before deleting must be a whole number, e.g. 30.")
    return {"mode": first(form, "policy"), "grace_days": int(days)}


def schedule_body(form: dict[str, list[str]]) -> dict[str, Any] | None:
    kind = first(form, "schedule", "off")
    if kind == "every":
        hours = first(form, "hours").strip()
        if not hours.isdigit() or not 1 <= int(hours) <= 24 * 31:
            raise PageError(422, "Enter the hours between syncs as a whole number from 1 to 744.")
        return {"every": f"{int(hours)}h", "timezone": first(form, "timezone").strip() or None}
    if kind == "cron":
        return {"cron": first(form, "cron").strip(), "timezone": first(form, "timezone").strip() or None}
    return None


def page_offset(request: Request) -> int:
    raw = request.query_params.get("offset", "0")
    return int(raw) if raw.isdigit() and int(raw) < 10_000_000 else 0


def paging(listed: dict[str, Any], **keep: str) -> dict[str, Any]:
    offset, limit, total = listed["offset"], listed["limit"], listed["total"]
    kept = {k: v for k, v in keep.items() if v}

    def link(to: int) -> str:
        return "?" + urlencode({**kept, "offset": to})

    return {
        "first": offset + 1 if total else 0,
        "last": min(offset + limit, total),
        "total": total,
        "previous": link(max(0, offset - limit)) if offset > 0 else None,
        "next": link(offset + limit) if offset + limit < total else None,
    }
