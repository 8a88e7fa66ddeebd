"""HTTP of portable credentials (see `credentials`).

- `GET /v1/employees/{employee_id}/credentials` (bearer token, like every `/v1` query): the
  employee's Open Badges 3.0 credentials, each as its VC-JWT and decoded, with its status.
  404 when this service issues no credentials (`DXT_CREDENTIAL_*` unset).
- Public, for any verifier, outside the OpenAPI document of queries (like `/healthz`):
  `GET /credentials/status/{n}` the signed `BitstringStatusListCredential` of list `n`
  (`application/vc+jwt`; 404 for a list that holds no credential) and
  `GET /.well-known/jwks.json` (also `/credentials/keys`) the issuer's public key.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, cast

import asyncpg
import jwt
from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dxtalent_certification.credentials import (
    CredentialIssuer,
    PostgresCredentials,
    StoredCredential,
    credential_issuer,
)
from dxtalent_certification.domain.status_list import status_list_credential
from dxtalent_contracts.types import ID_PATTERN
from dxtalent_infra.http_api import INVALID, ErrorBody, v1_router
from dxtalent_infra.runtime import ServiceContext

JWT_MEDIA_TYPE = "application/vc+jwt"
EmployeeId = Annotated[
    str, Path(pattern=ID_PATTERN, description="employee id", examples=["E000123"])
]


class CredentialView(BaseModel):
    """One issued credential: the VC-JWT to hand to a verifier, and what it says."""

    model_config = ConfigDict(frozen=True)

    id: str
    level: int
    status: Literal["active", "revoked"]
    valid_from: dt.datetime
    revoked_at: dt.datetime | None
    jwt: str = Field(description="the credential as a VC-JWT (compact JWS)")
    credential: dict[str, Any] = Field(description="the `vc` claim of the JWT, decoded")


class CredentialsView(BaseModel):
    """Every credential issued to one employee, oldest first."""

    model_config = ConfigDict(frozen=True)

    employee_id: str
    credentials: list[CredentialView]


def credential_view(stored: StoredCredential) -> CredentialView:
    """A stored credential as the API shows it."""
    claims = jwt.decode(stored.token, options={"verify_signature": False})
    return CredentialView(
        id=stored.credential_id,
        level=stored.level,
        status="active" if stored.revoked_at is None else "revoked",
        valid_from=stored.valid_from,
        revoked_at=stored.revoked_at,
        jwt=stored.token,
        credential=claims["vc"],
    )


def _off() -> HTTPException:
    return HTTPException(
        404,
        "this service issues no credentials: DXT_CREDENTIAL_KEY_FILE and "
        "DXT_CREDENTIAL_ISSUER are unset",
    )


def _public_routes(ctx: ServiceContext, issuer: CredentialIssuer | None) -> APIRouter:
    store = PostgresCredentials(ctx.schema)
    public = APIRouter(include_in_schema=False)

    @public.get("/credentials/status/{number}")
    async def status_list(number: Annotated[int, Path(ge=1)]) -> Response:
        if issuer is None:
            raise _off()
        async with ctx.pool.acquire() as conn:
            rows = await store.status_list(cast(asyncpg.Connection, conn), number)
        if rows is None:
            raise HTTPException(404, f"status list {number} holds no credential")
        body = status_list_credential(issuer.issuer, number, rows.revoked, rows.as_of)
        return Response(issuer.signer.sign(body), media_type=JWT_MEDIA_TYPE)

    @public.get("/.well-known/jwks.json")
    @public.get("/credentials/keys")
    async def keys() -> JSONResponse:
        if issuer is None:
            raise _off()
        return JSONResponse(issuer.signer.jwks(), media_type="application/jwk-set+json")

    return public


def credential_routes(ctx: ServiceContext, queries: APIRouter) -> APIRouter:
    """The service's `/v1` `queries`, with the credential routes beside them."""
    issuer = credential_issuer(ctx.settings, ctx.catalog, ctx.schema)
    store = PostgresCredentials(ctx.schema)
    v1 = v1_router(ctx.settings, tags=["credentials"])
    off: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody, "description": "this service issues no credentials"}
    }

    @v1.get("/employees/{employee_id}/credentials", responses={**off, **INVALID})
    async def get_credentials(employee_id: EmployeeId) -> CredentialsView:
        """The employee's Open Badges 3.0 credentials, active and revoked (none: empty)."""
        if issuer is None:
            raise _off()
        async with ctx.pool.acquire() as conn:
            stored = await store.of_employee(cast(asyncpg.Connection, conn), employee_id)
        return CredentialsView(
            employee_id=employee_id, credentials=[credential_view(s) for s in stored]
        )

    router = APIRouter()
    router.include_router(queries)
    router.include_router(v1)
    router.include_router(_public_routes(ctx, issuer))
    return router
