"""The admin API's routes: each a thin adapter over one operation of admin/operations.py.

`create_app()` builds the service; `provision serve` runs it with uvicorn. Its OpenAPI document is at
`/openapi.json`, the docs at `/docs`. Every route needs an API key except `/health` and the connect
callback, which Unified.to's redirect reaches in the admin's browser.
"""

from __future__ import annotations

import settings.allocator  # noqa: F401  (first: polars reads its allocator's settings as it loads)

# isort: split

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin import operations as ops
from admin import privacy
from admin.connect import ConnectError, accept_state, authorization_url
from admin.explain import explain_person
from admin.runs import Dispatcher, default_dispatcher
from api.auth import Caller, TenantId, engine_of
from api.problems import MEDIA_TYPE, Problem, install, problem
from domain.errors import ExplainedError
from domain.schedules import Schedule, checked, parse_every
from settings import Settings, get_settings
from sources.hosts import UNIFIED_REGIONS
from store.access import audit_entries, create_session_key, end_session_key
from store.db import make_engine
from store.models import Tenant
from store.repo import employee_page, list_runs, run_change_page, selected_groups, stored_groups, tenant_run
from web import pages

MAX_BODY_BYTES = 64 * 1024
PROBLEM = {"content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, **PROBLEM}
    for status, description in {
        400: "A body that is not JSON",
        401: "No valid API key",
        404: "Unknown tenant (or another tenant's), run or employee",
        409: "At odds with the current state",
        413: "A body over 64 KiB",
        422: "Invalid request",
    }.items()
}


# ---- models -----------------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProblemOut(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    run_id: str | None = None


class TenantOut(BaseModel):
    id: str
    name: str
    created_at: datetime


class RunOut(BaseModel):
    run_id: str
    flow_run_id: str | None
    trigger: str
    dry_run: bool
    started_at: str | None
    ended_at: str | None
    outcome: str = Field(
        description="queued (until the run holds the tenant's lock), running, succeeded, failed, stopped_by_guard, "
        "refused, skipped_late, or abandoned (its worker died; found by the next holder of the tenant's lock)."
    )
    failed_stage: str | None
    error: str | None
    counts: dict[str, int]


class IntegrationOut(BaseModel):
    state: Literal["active", "disconnected", "not_connected"]
    provider: str | None
    connection_id: str | None
    health: Literal["ok", "failing"] | None
    last_run: RunOut | None
    updated_at: str | None = None


class AuthorizationIn(Strict):
    provider: Literal["entra", "personio", "google"]
    region: Literal["us", "eu", "au"] | None = Field(None, description="Unified.to's region (default: the service's).")
    return_url: str | None = Field(None, max_length=1000, description="Where to send the admin back (allow-listed).")


class AuthorizationOut(BaseModel):
    url: str


class GroupOut(BaseModel):
    group_id: str
    name: str | None
    type: str | None = Field(None, description="The source's group type: DEPARTMENT, TEAM, BRANCH, GROUP, ...")
    parent_id: str | None
    member_count: int
    refreshed_at: datetime | None = Field(None, description="When the source was read (stored lists only).")
    employees: int | None = Field(None, description="Employees the group holds (selected groups only).")


class ScheduleIn(Strict):
    every: str | None = Field(None, max_length=20, description="An interval like 24h, 30m, 1d.")
    cron: str | None = Field(None, max_length=100, description='A cron string like "0 3 * * *".')
    timezone: str | None = Field(None, max_length=64, description="An IANA time zone, e.g. Europe/Berlin.")


class GuardIn(Strict):
    max_share: float | None = Field(None, gt=0, le=1)
    min_count: int | None = Field(None, ge=1, le=1_000_000)


class PolicyIn(Strict):
    mode: Literal["flag", "deactivate", "delete"] | None = None
    grace_days: int | None = Field(None, ge=1, le=3650, description="Days flagged before `delete` removes one.")


class SettingsIn(Strict):
    group_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=1000)
    all_users: bool | None = None
    schedule: ScheduleIn | None = Field(None, description="null: no automatic sync; absent: unchanged.")
    guard: GuardIn | None = None
    policy: PolicyIn | None = Field(None, description="The deprovisioning policy; absent: unchanged.")
    suppress_erased: bool | None = Field(
        None, description="An erasure also keeps the person out of later syncs (needs the suppression secret)."
    )
    retention_days: int | None = Field(None, ge=1, le=3650, description="Names and emails leave the run history.")
    sync: bool = Field(False, description="Save and Sync: start a sync once the settings are stored.")


class ScheduleOut(BaseModel):
    cron: str | None
    interval_seconds: int | None
    timezone: str | None


class GuardOut(BaseModel):
    max_share: float
    min_count: int


class PolicyOut(BaseModel):
    mode: Literal["flag", "deactivate", "delete"]
    grace_days: int


class SettingsOut(BaseModel):
    group_ids: list[str]
    all_users: bool
    schedule: ScheduleOut | None
    guard: GuardOut
    policy: PolicyOut
    suppress_erased: bool = False
    retention_days: int = 90
    run: RunRef | None = None


class SyncIn(Strict):
    dry_run: bool = False
    override_guard: bool = Field(False, description="Apply a run the mass-change guard would stop (audited).")


class SessionOut(BaseModel):
    key: str = Field(description="The session's key, shown once: send it as the Bearer key until it expires.")
    tenant: str
    expires_at: datetime


class RunRef(BaseModel):
    run_id: str
    url: str


class RunPage(BaseModel):
    runs: list[RunOut]


class ChangeOut(BaseModel):
    run_id: str
    employee_id: int | None
    employee_email: str | None = Field(description="The employee's email now (null once deleted or erased).")
    source_user_id: str | None
    action: str
    group_id: str | None = Field(None, description="The group joined or left (group sync).")
    reason: str | None
    changed_fields: str | None
    old_email: str | None
    new_email: str | None
    old_first_name: str | None
    new_first_name: str | None
    old_last_name: str | None
    new_last_name: str | None
    old_display_name: str | None
    new_display_name: str | None
    old_status: str | None
    new_status: str | None


class ChangePage(BaseModel):
    total: int
    offset: int
    limit: int
    changes: list[ChangeOut]


class EmployeeOut(BaseModel):
    id: int
    email: str
    first_name: str | None
    last_name: str | None
    display_name: str | None
    status: Literal["synced", "terminated", "non_matching", "unmanaged"]
    link: str | None
    reason: str | None
    flagged_at: str | None = Field(description="When a run first flagged it; null while synced or unmanaged.")
    deactivated: bool = Field(description="Inactive for the platform (the deprovisioning policy).")
    leave_date: str | None = Field(
        None, description="The end date the source gives (YYYY-MM-DD): ahead of today, the planned leave date."
    )
    updated_at: str | None


class EmployeePage(BaseModel):
    total: int
    offset: int
    limit: int
    employees: list[EmployeeOut]


class EmployeeIn(Strict):
    email: str = Field(min_length=3, max_length=320)
    first_name: str = Field(min_length=1, max_length=200)
    last_name: str = Field(min_length=1, max_length=200)


class EmployeeCreated(BaseModel):
    id: int


class ErasureIn(Strict):
    """Who to erase: by email or by the source user id their employee is linked to (exactly one)."""

    email: str | None = Field(None, min_length=3, max_length=320)
    source_id: str | None = Field(None, min_length=1, max_length=200)


class ErasureOut(BaseModel):
    employee_id: int
    run_changes_scrubbed: int
    suppressed: bool = Field(False, description="Put on the suppression list (the tenant suppresses erased people).")


class PersonIn(Strict):
    email: str = Field(min_length=3, max_length=320)


class MembershipOut(BaseModel):
    group_id: str
    name: str | None


class ExportedChangeOut(BaseModel):
    run_id: str
    run_started_at: str
    seq: int
    employee_id: int | None
    source_user_id: str | None
    action: str
    group_id: str | None
    reason: str | None
    changed_fields: str | None
    old_email: str | None
    new_email: str | None
    old_first_name: str | None
    new_first_name: str | None
    old_last_name: str | None
    new_last_name: str | None
    old_display_name: str | None
    new_display_name: str | None
    old_status: str | None
    new_status: str | None


class SuppressionOut(BaseModel):
    since: str


class ExportOut(BaseModel):
    """Everything stored about one person of the tenant (GDPR art. 15), nothing about anyone else."""

    tenant: str
    exported_at: str
    employee: dict[str, Any] | None = Field(description="The employee row, every column (null: erased).")
    group_memberships: list[MembershipOut]
    run_changes: list[ExportedChangeOut] = Field(description="Every run change naming them, old -> new.")
    audit: list[AuditOut] = Field(description="Audit entries naming their employee id (theirs alone).")
    suppression: SuppressionOut | None = Field(description="On the suppression list since (a one-way digest only).")


class PrefectTracesOut(BaseModel):
    deployments: list[str]
    flow_runs: int
    artifacts: int


class TenantDeletedOut(BaseModel):
    tenant: str
    dry_run: bool
    rows: dict[str, int] = Field(description="Rows removed (or that would be) per table of the employee store.")
    unified_connection: str | None = Field(description="The Unified.to connection deleted; null: none was live.")
    unified_known: bool = Field(description="False when Unified.to no longer knew the connection.")
    prefect: PrefectTracesOut | None = Field(description="What was removed on the Prefect server; null: none set.")
    notes: list[str]


class DisconnectedOut(BaseModel):
    employees_unmanaged: int
    revoked_at_unified: bool


class AuditOut(BaseModel):
    at: str
    actor: str
    action: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class AuditPage(BaseModel):
    entries: list[AuditOut]


class Health(BaseModel):
    status: Literal["ok"]


class SourceRecordOut(BaseModel):
    """A source user's allowed attributes, nothing else."""

    user_id: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    display_name: str | None
    employment_status: str | None


class PersonGroupOut(BaseModel):
    group_id: str
    name: str | None
    selected: bool
    inherited: bool = Field(description="A member through a child group (named in `via`), not directly.")
    via: list[str]


class ScopeOut(BaseModel):
    verdict: Literal["all_users", "in_selected_group", "outside"]
    because: str
    selected_groups: list[str]


class MatchOut(BaseModel):
    rule: int | None = Field(description="The matching rule of the design that decides (1-6), or null.")
    employee_id: int | None
    how: str


class FieldChangeOut(BaseModel):
    old: str | bool | None
    new: str | bool | None


class OutcomeOut(BaseModel):
    action: str = Field(description="The plan row's action, as the next run would record it.")
    reason: str | None
    new_status: str | None
    changed_fields: list[str]
    changes: dict[str, FieldChangeOut]


class ExplainedSourceUserOut(BaseModel):
    record: SourceRecordOut
    groups: list[PersonGroupOut]
    scope: ScopeOut
    quarantined: str | None = Field(description="Why the next run quarantines the record, or null.")
    match: MatchOut
    next_run: OutcomeOut | None = Field(description="Its own outcome when no employee carries it.")


class ExplainedEmployeeOut(BaseModel):
    employee_id: int
    email: str
    first_name: str | None
    last_name: str | None
    display_name: str | None
    status: str
    link: str | None
    relation: str
    next_run: OutcomeOut | None


class SelectedGroupOut(BaseModel):
    group_id: str
    name: str | None


class SelectionOut(BaseModel):
    all_users: bool
    groups: list[SelectedGroupOut]
    missing_groups: list[str]


class ExplanationOut(BaseModel):
    tenant: str
    query: dict[str, str]
    selection: SelectionOut
    stopped_by_guard: str | None = Field(description="Why the mass-change guard would stop the next run, or null.")
    source_users: list[ExplainedSourceUserOut]
    employees: list[ExplainedEmployeeOut]


# ---- the body-size limit ------------------------------------------------------------------------------


class BodyLimit:
    """Refuse a request body over `limit` bytes with 413, announced or not, before a route reads it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await problem(413, f"The request body is over {self.limit} bytes.")(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise Problem(413, f"The request body is over {self.limit} bytes.")
            return message

        await self.app(scope, limited, send)


# ---- the app ------------------------------------------------------------------------------------------


def create_app(
    *, engine: Engine | None = None, dispatcher: Dispatcher | None = None, settings: Settings | None = None
) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Employee provisioning: admin API",
        version="1",
        description="Connect a tenant's HR system or identity provider, choose groups, sync, and see the result.",
        dependencies=[Depends(_known_query_only)],
    )
    app.state.engine = engine or make_engine()
    app.state.dispatcher = dispatcher or default_dispatcher()
    app.state.settings = settings
    install(app)
    app.add_middleware(BodyLimit)
    _routes(app)
    pages.install(app)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with the problem+json schema every error response refers to."""
        if app.openapi_schema is None:
            document = default_openapi()
            document.setdefault("components", {}).setdefault("schemas", {})["ProblemOut"] = (
                ProblemOut.model_json_schema()
            )
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _known_query_only(request: Request) -> None:
    """A query parameter the path does not take is refused, not ignored: `?stauts=terminated` would
    otherwise answer the whole unfiltered list."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return  # the settings page's routes read their own query
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = f"this path takes {', '.join(sorted(known))}" if known else "this path takes none"
        raise Problem(422, f"Unknown query parameter {unknown[0]!r}; {takes}.")


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for inner in dependant.dependencies:
        names |= _query_names(inner)
    return names


def _run_ref(request: Request, tenant: str, run_id: str) -> RunRef:
    return RunRef(run_id=run_id, url=str(request.url_for("get_run", tenant=tenant, run_id=run_id).path))


def _start(request: Request, tenant: str, *, dry_run: bool, override_guard: bool, actor: str) -> RunRef:
    engine = engine_of(request)
    run_id = ops.queue_sync(engine, tenant, dry_run=dry_run, override_guard=override_guard, actor=actor)
    request.app.state.dispatcher.start(tenant, run_id, dry_run=dry_run, override_guard=override_guard)
    return _run_ref(request, tenant, run_id)


def _schedule(schedule: ScheduleIn) -> Schedule:
    interval = parse_every(schedule.every) if schedule.every else None
    return checked(schedule.cron, interval, schedule.timezone)


def _settings_out(current: ops.TenantSettings, run: RunRef | None = None) -> SettingsOut:
    return SettingsOut.model_validate({**current.as_dict(), "run": run})


def _routes(app: FastAPI) -> None:
    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> Health:
        """Public: the service answers."""
        return Health(status="ok")

    @app.post("/sessions", response_model=SessionOut, status_code=201, responses=ERRORS, tags=["sessions"])
    def start_session(request: Request, caller: Caller) -> SessionOut:
        """A signed-in page's key: the caller's tenant only, expiring in hours (a tenant's key, not a session's)."""
        key, expires = create_session_key(engine_of(request), caller)
        return SessionOut(key=key, tenant=caller.tenant or "", expires_at=expires)

    @app.delete("/sessions/current", status_code=204, responses=ERRORS, tags=["sessions"])
    def end_session(request: Request, caller: Caller) -> Response:
        """Sign-out: the calling session's key is revoked (another kind of key is refused, 409)."""
        end_session_key(engine_of(request), caller)
        return Response(status_code=204)

    @app.get("/tenants/{tenant}", response_model=TenantOut, responses=ERRORS, tags=["tenant"])
    def get_tenant(request: Request, tenant: TenantId) -> TenantOut:
        with Session(engine_of(request)) as session:
            row = session.get(Tenant, tenant)
            return TenantOut(id=row.id, name=row.name, created_at=row.created_at)  # type: ignore[union-attr]

    @app.get("/tenants/{tenant}/integration", response_model=IntegrationOut, responses=ERRORS, tags=["integration"])
    def get_integration(request: Request, tenant: TenantId) -> IntegrationOut:
        return IntegrationOut.model_validate(ops.integration_view(engine_of(request), tenant))

    @app.post(
        "/tenants/{tenant}/integration/authorization",
        response_model=AuthorizationOut,
        status_code=201,
        responses=ERRORS,
        tags=["integration"],
    )
    def authorize(request: Request, tenant: TenantId, body: AuthorizationIn) -> AuthorizationOut:
        """The URL to send the admin's browser to: Unified.to's sign-in at the provider, then back here."""
        settings: Settings = request.app.state.settings
        base = UNIFIED_REGIONS[body.region] if body.region else settings.unified_base_url
        url = authorization_url(engine_of(request), settings, tenant, body.provider, base, body.return_url)
        return AuthorizationOut(url=url)

    @app.get(
        "/connect/callback",
        status_code=303,
        tags=["integration"],
        response_class=Response,
        responses={
            **{status: answer for status, answer in ERRORS.items() if status != 401},
            200: {"description": "Connected (no return URL)", "content": {"text/plain": {}}},
            303: {"description": "Back to the platform's page, with `connected` or `error`"},
        },
    )
    def callback(
        request: Request,
        state: Annotated[str, Query(max_length=2000)],
        id: Annotated[str | None, Query(max_length=200)] = None,
        error: Annotated[str | None, Query(max_length=500)] = None,
    ) -> Response:
        """Public: where Unified.to sends the admin back. Checks the state, then the connection, then saves."""
        engine, settings = engine_of(request), request.app.state.settings
        accepted, return_url = accept_state(engine, settings, state)
        outcome: dict[str, str] = {"tenant": accepted.tenant}
        try:
            if error or not id:
                raise ConnectError(f"The sign-in at the provider did not complete ({error or 'no connection id'}).")
            ops.connect_tenant(
                engine,
                accepted.tenant,
                provider=accepted.provider,
                connection_id=id,
                base_url=accepted.base_url,
                actor=f"connect:{accepted.tenant}",
            )
            outcome["connected"] = accepted.provider
        except ExplainedError as exc:
            if return_url is None:
                raise
            outcome["error"] = str(exc)
        if return_url is None:
            return Response(f"Tenant {accepted.tenant} is connected to {accepted.provider}.\n", media_type="text/plain")
        joiner = "&" if "?" in return_url else "?"
        return RedirectResponse(return_url + joiner + urlencode(outcome), status_code=303)

    @app.delete("/tenants/{tenant}/integration", response_model=DisconnectedOut, responses=ERRORS, tags=["integration"])
    def disconnect(request: Request, tenant: TenantId, caller: Caller) -> DisconnectedOut:
        """End the integration: employees stay and become unmanaged; the Unified.to connection is deleted."""
        done = ops.disconnect_tenant(engine_of(request), tenant, actor=caller.name)
        ops.apply_schedule(engine_of(request), tenant)  # its scheduled deployment goes too
        return DisconnectedOut(employees_unmanaged=done.employees, revoked_at_unified=done.revoked_at_unified)

    @app.get("/tenants/{tenant}/groups", response_model=list[GroupOut], responses=ERRORS, tags=["settings"])
    def groups(
        request: Request,
        tenant: TenantId,
        fresh: Annotated[
            bool, Query(description="Read the source now (default), or answer the list its last read stored.")
        ] = True,
        selected: Annotated[
            bool, Query(description="Only the groups the tenant syncs, with the employees each holds (stored).")
        ] = False,
    ) -> list[GroupOut]:
        """The source's groups, flattened, with member counts: fresh from the source (which reads all its users:
        seconds for a large tenant), or as stored by the last read (connect, a sync, a fresh list); `selected`:
        the groups the tenant syncs, with how many of its employees each holds (group sync)."""
        if selected:
            return [GroupOut.model_validate(row) for row in selected_groups(engine_of(request), tenant)]
        if not fresh:
            return [GroupOut.model_validate(row) for row in stored_groups(engine_of(request), tenant)]
        listed = ops.fresh_groups(engine_of(request), tenant)
        return [GroupOut.model_validate(row) for row in listed.to_dicts()]

    @app.get("/tenants/{tenant}/settings", response_model=SettingsOut, responses=ERRORS, tags=["settings"])
    def get_settings_(request: Request, tenant: TenantId) -> SettingsOut:
        return _settings_out(ops.tenant_settings(engine_of(request), tenant))

    @app.put("/tenants/{tenant}/settings", response_model=SettingsOut, responses=ERRORS, tags=["settings"])
    def put_settings(
        request: Request, response: Response, tenant: TenantId, caller: Caller, body: SettingsIn
    ) -> SettingsOut:
        """Store the selection, schedule and guard; with `sync`, also start a sync (Save and Sync: 202)."""
        if body.all_users and body.group_ids:
            raise Problem(422, "Give either group_ids or all_users, not both.")
        changes: dict[str, Any] = {}
        if "schedule" in body.model_fields_set:
            changes["schedule"] = None if body.schedule is None else _schedule(body.schedule)
        if body.guard is not None:
            changes["guard_max_share"], changes["guard_min_count"] = body.guard.max_share, body.guard.min_count
        if body.policy is not None:
            changes["policy_mode"], changes["policy_grace_days"] = body.policy.mode, body.policy.grace_days
        changes["suppress_erased"], changes["retention_days"] = body.suppress_erased, body.retention_days
        current = ops.save_settings(
            engine_of(request),
            tenant,
            actor=caller.name,
            group_ids=body.group_ids,
            all_users=body.all_users,
            **changes,
        )
        if "schedule" in changes:
            ops.apply_schedule(engine_of(request), tenant)
        run = None
        if body.sync:
            run = _start(request, tenant, dry_run=False, override_guard=False, actor=caller.name)
            response.status_code = 202
        return _settings_out(current, run)

    @app.post("/tenants/{tenant}/syncs", response_model=RunRef, status_code=202, responses=ERRORS, tags=["runs"])
    def start_sync(
        request: Request, tenant: TenantId, caller: Caller, body: Annotated[SyncIn | None, Body()] = None
    ) -> RunRef:
        """Start a sync now (Sync now). 409 with the running run's id when the tenant is being synced."""
        body = body or SyncIn(dry_run=False, override_guard=False)
        return _start(request, tenant, dry_run=body.dry_run, override_guard=body.override_guard, actor=caller.name)

    @app.get("/tenants/{tenant}/runs", response_model=RunPage, responses=ERRORS, tags=["runs"])
    def runs(request: Request, tenant: TenantId, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> RunPage:
        return RunPage(runs=[RunOut.model_validate(r) for r in list_runs(engine_of(request), tenant, limit=limit)])

    @app.get("/tenants/{tenant}/runs/{run_id}", response_model=RunOut, responses=ERRORS, tags=["runs"])
    def get_run(request: Request, tenant: TenantId, run_id: Annotated[str, Path(max_length=36)]) -> RunOut:
        return RunOut.model_validate(tenant_run(engine_of(request), tenant, run_id))

    @app.get("/tenants/{tenant}/runs/{run_id}/changes", response_model=ChangePage, responses=ERRORS, tags=["runs"])
    def run_changes(
        request: Request,
        tenant: TenantId,
        run_id: Annotated[str, Path(max_length=36)],
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> ChangePage:
        total, rows = run_change_page(engine_of(request), tenant, run_id, offset=offset, limit=limit)
        return ChangePage(total=total, offset=offset, limit=limit, changes=[ChangeOut.model_validate(r) for r in rows])

    @app.get("/tenants/{tenant}/employees", response_model=EmployeePage, responses=ERRORS, tags=["employees"])
    def employees(
        request: Request,
        tenant: TenantId,
        status: Annotated[Literal["synced", "terminated", "non_matching", "unmanaged"] | None, Query()] = None,
        q: Annotated[str | None, Query(max_length=200, description="Part of a name or an email.")] = None,
        deactivated: Annotated[
            bool | None, Query(description="Only those inactive for the platform (true) or active (false).")
        ] = None,
        group: Annotated[str | None, Query(max_length=200, description="Only the members of this group.")] = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> EmployeePage:
        total, rows = employee_page(
            engine_of(request),
            tenant,
            status=status,
            search=q,
            deactivated=deactivated,
            group=group,
            offset=offset,
            limit=limit,
        )
        return EmployeePage(
            total=total, offset=offset, limit=limit, employees=[EmployeeOut.model_validate(r) for r in rows]
        )

    @app.post(
        "/tenants/{tenant}/employees",
        response_model=EmployeeCreated,
        status_code=201,
        responses=ERRORS,
        tags=["employees"],
    )
    def create_employee(request: Request, tenant: TenantId, caller: Caller, body: EmployeeIn) -> EmployeeCreated:
        """An employee created by hand: unmanaged and unlinked; the next sync matches it by email."""
        employee_id = ops.create_employee(
            engine_of(request),
            tenant,
            email=body.email,
            first_name=body.first_name,
            last_name=body.last_name,
            actor=caller.name,
        )
        return EmployeeCreated(id=employee_id)

    @app.delete("/tenants/{tenant}/employees/{employee_id}", status_code=204, responses=ERRORS, tags=["employees"])
    def delete_employee(
        request: Request, tenant: TenantId, caller: Caller, employee_id: Annotated[int, Path(ge=1, le=2**31 - 1)]
    ) -> Response:
        """Delete a non_matching, terminated or unmanaged employee; a synced one is refused (409). A running sync of
        the tenant is waited for a few seconds, then the deletion is refused (409, naming it)."""
        ops.delete_employee(engine_of(request), tenant, employee_id, actor=caller.name)
        return Response(status_code=204)

    @app.post("/tenants/{tenant}/erasures", response_model=ErasureOut, responses=ERRORS, tags=["employees"])
    def erase(request: Request, tenant: TenantId, caller: Caller, body: ErasureIn) -> ErasureOut:
        """GDPR erasure of one employee (give `email` or `source_id`): deleted, and scrubbed from the run history.
        A running sync of the tenant is waited for a few seconds, then the erasure is refused (409, naming it)."""
        if (body.email is None) == (body.source_id is None):
            raise Problem(422, "Give either email or source_id, not both or neither.")
        erased = ops.erase(engine_of(request), tenant, body.email, source_id=body.source_id, actor=caller.name)
        return ErasureOut.model_validate(erased)

    @app.post("/tenants/{tenant}/exports", response_model=ExportOut, responses=ERRORS, tags=["employees"])
    def export(request: Request, tenant: TenantId, caller: Caller, body: PersonIn) -> ExportOut:
        """Access request (GDPR art. 15): everything stored about the person with this email, as one document
        (404 when the tenant holds nothing about them). A POST, so the email stays out of URLs and access logs."""
        document = privacy.export_person(engine_of(request), tenant, body.email, actor=caller.name)
        return ExportOut.model_validate(document)

    @app.post("/tenants/{tenant}/suppressions/lift", status_code=204, responses=ERRORS, tags=["employees"])
    def lift_suppression(request: Request, tenant: TenantId, caller: Caller, body: PersonIn) -> Response:
        """Take an erased person off the suppression list: the next sync may create or link them again."""
        privacy.lift(engine_of(request), tenant, body.email, actor=caller.name)
        return Response(status_code=204)

    @app.delete(
        "/tenants/{tenant}",
        response_model=TenantDeletedOut,
        responses={
            **ERRORS,
            403: {"description": "A tenant's own key (only all-tenants keys delete)", **PROBLEM},
            502: {"description": "Unified.to failed deleting the connection (nothing deleted here)", **PROBLEM},
            503: {"description": "The Prefect server is unreachable (nothing deleted here)", **PROBLEM},
        },
        tags=["tenant"],
    )
    def delete_tenant(
        request: Request,
        tenant: TenantId,
        caller: Caller,
        dry_run: Annotated[bool, Query(description="Say what would be removed; remove nothing.")] = False,
        confirm: Annotated[
            str | None, Query(max_length=63, description="The tenant id again: needed unless `dry_run`.")
        ] = None,
    ) -> TenantDeletedOut:
        """Offboard a customer: every row of the tenant in every table, its Prefect deployments, flow runs and
        artifacts and its Unified.to connection; 409 while a run of it is in progress. For all-tenants keys only;
        the tenant's id repeated in `confirm` (as `provision tenant delete` asks for `--yes`), since it cannot be
        undone."""
        if not dry_run and confirm != tenant:
            raise Problem(422, f"Deleting tenant {tenant!r} cannot be undone: repeat its id as confirm={tenant}.")
        if caller.tenant is not None:
            raise Problem(403, "Only an all-tenants key can delete a tenant.")
        done = privacy.delete_tenant(engine_of(request), tenant, dry_run=dry_run, actor=caller.name)
        return TenantDeletedOut.model_validate(done.as_dict())

    @app.get("/tenants/{tenant}/audit", response_model=AuditPage, responses=ERRORS, tags=["tenant"])
    def audit(
        request: Request,
        tenant: TenantId,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> AuditPage:
        entries = audit_entries(engine_of(request), tenant, limit=limit, offset=offset)
        return AuditPage(entries=[AuditOut.model_validate(e) for e in entries])

    @app.get(
        "/tenants/{tenant}/explain",
        response_model=ExplanationOut,
        responses={
            **ERRORS,
            404: {"description": "Unknown tenant (or another tenant's), or a person nobody knows", **PROBLEM},
            502: {"description": "The source failed", **PROBLEM},
        },
        tags=["employees"],
    )
    def explain(
        request: Request,
        tenant: TenantId,
        email: Annotated[str | None, Query(min_length=1, max_length=320, description="The person's email.")] = None,
        source_id: Annotated[
            str | None, Query(min_length=1, max_length=200, description="The person's user id in the source.")
        ] = None,
    ) -> ExplanationOut:
        """One person, read-only (give `email` or `source_id`): their source record, the groups that put them in
        or out of scope, the employee they match and by which rule, and what the next run would do and why. Reads
        the source once; writes nothing."""
        if (email is None) == (source_id is None):
            raise Problem(422, "Give either email or source_id, not both or neither.")
        document = explain_person(engine_of(request), tenant, email=email, source_id=source_id)
        return ExplanationOut.model_validate(document)
