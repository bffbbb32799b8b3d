"""Who is calling: `Authorization: Bearer <key>`, and which tenants that key may see.

Every route depends on `holder` unless it is explicitly public (health, the connect callback). A tenant's
path is reached through `tenant_in_scope`, the one place the scope is checked: another tenant's path
answers 404 with the same sentence as a tenant that does not exist, so a key cannot learn which exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.problems import Problem
from store.access import KeyHolder, authenticate
from store.models import Tenant

TENANT_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="employee-provisioning"'}


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def holder(request: Request) -> KeyHolder:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise Problem(401, "An API key is required: send it as `Authorization: Bearer <key>`.")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(401, "The Authorization header must read `Bearer <key>`.")
    found = authenticate(engine_of(request), key.strip())
    if found is None:
        raise Problem(401, "The API key is not valid (unknown or revoked).")
    return found


def tenant_in_scope(
    request: Request,
    caller: Annotated[KeyHolder, Depends(holder)],
    tenant: Annotated[str, Path(max_length=63, pattern=TENANT_PATTERN, description="The tenant id (a slug).")],
) -> str:
    """The tenant of the path, when it exists and the key may see it; else 404, the same for both."""
    if caller.sees(tenant):
        with Session(engine_of(request)) as session:
            if session.get(Tenant, tenant) is not None:
                return tenant
    raise Problem(404, f"Unknown tenant {tenant!r}.")


Caller = Annotated[KeyHolder, Depends(holder)]
TenantId = Annotated[str, Depends(tenant_in_scope)]
