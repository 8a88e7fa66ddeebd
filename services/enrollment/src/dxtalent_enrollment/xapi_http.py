"""The xAPI statements resource of the enrollment service, under `/xapi` (xAPI 1.0.3).

- `PUT /xapi/statements?statementId=` (204), `POST /xapi/statements` one or an array (200, the
  ids), `GET /xapi/statements?statementId=` (the statement as received), `GET /xapi/about`.
- Every request but `/about` needs `X-Experience-API-Version: 1.0[.x]` (else 400) and the
  ingest token, as a Bearer token or as the password of HTTP Basic; every answer carries
  `X-Experience-API-Version: 1.0.3`.
- A request is all or nothing: a malformed statement is 400, an id already stored with other
  content is 409 (nothing is stored). Statements are stored before the facts they mean are
  published (`statements`); statements sent again are stored once and their facts published
  again, harmlessly.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials as Bearer
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import SecretStr, ValidationError

from dxtalent_enrollment.intake import (
    BEARER_SCHEME,
    SETTING,
    closed_guard,
    read_body,
)
from dxtalent_enrollment.statements import StatementStore
from dxtalent_enrollment.xapi_docs import (
    CONFLICT,
    ERRORS,
    POST_BODY,
    PUT_BODY,
    VERSION,
    VERSION_HEADER,
    VERSION_PARAMETER,
)
from dxtalent_enrollment.xapi_intake import ConflictError, record
from dxtalent_enrollment.xapi_model import Statement
from dxtalent_infra.http_api import ErrorBody, bearer_scheme, same_token, validation_failed
from dxtalent_infra.runtime import ServiceContext

log = structlog.get_logger(__name__)

_BEARER = bearer_scheme(BEARER_SCHEME, SETTING)
_BASIC = HTTPBasic(
    auto_error=False, scheme_name="ingestBasic", description=f"any user, password {SETTING}"
)
StatementId = Annotated[uuid.UUID, Query(alias="statementId", description="the statement's id")]


class XapiRoute(APIRoute):
    """Every answer, errors included, carries the xAPI version headers; a request the schema
    refuses is 400 (xAPI) with `{"detail": ...}` naming each refused parameter."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                response = await handler(request)
            except RequestValidationError as exc:
                refused = json.loads(bytes((await validation_failed(request, exc)).body))
                response = JSONResponse({"detail": refused["message"]}, 400)
            except HTTPException as exc:
                response = JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
            response.headers[VERSION_HEADER] = VERSION
            response.headers["X-Experience-API-Consistent-Through"] = dt.datetime.now(
                dt.UTC
            ).isoformat()
            return response

        return answer


def _token_guard(token: SecretStr | None) -> Callable[..., Awaitable[None]]:
    """Bearer <token>, or Basic with any user and <token> as the password."""
    if token is None:
        return closed_guard()

    async def guard(
        bearer: Bearer | None = Depends(_BEARER),  # noqa: B008
        basic: HTTPBasicCredentials | None = Depends(_BASIC),  # noqa: B008
    ) -> None:
        given = bearer.credentials if bearer else basic.password if basic else None
        if given is None or not same_token(given, token):
            raise HTTPException(
                401,
                f"send {SETTING} as 'Authorization: Bearer <token>' or as the password of "
                "HTTP Basic",
                headers={"WWW-Authenticate": 'Basic realm="dxtalent", Bearer realm="dxtalent"'},
            )

    return guard


async def _version(request: Request) -> None:
    given = request.headers.get(VERSION_HEADER)
    if given is None or not (given == "1.0" or given.startswith("1.0.")):
        raise HTTPException(
            400, f"{VERSION_HEADER} must be 1.0 or 1.0.x (this LRS speaks {VERSION}); got {given!r}"
        )


def _statements(doc: Any) -> list[tuple[Statement, dict[str, Any]]]:
    """Each statement of a body, validated, with the statement as received."""
    docs = doc if isinstance(doc, list) else [doc]
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise HTTPException(400, "the body is a statement (a JSON object) or a non-empty array")
    out = []
    for i, d in enumerate(docs):
        try:
            out.append((Statement.model_validate(d), d))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(map(str, first["loc"])) or "(statement)"
            raise HTTPException(400, f"statement {i}: {where}: {first['msg']}") from None
    return out


async def _body(request: Request) -> Any:
    try:
        return json.loads(await read_body(request))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from None


async def _record(
    ctx: ServiceContext,
    store: StatementStore,
    statements: list[tuple[str, Statement, dict[str, Any]]],
) -> None:
    ids = [i for i, _, _ in statements]
    if len(set(ids)) != len(ids):
        raise HTTPException(400, "the batch has two statements with one id")
    try:
        await record(ctx, store, statements)
    except ConflictError as exc:
        raise HTTPException(409, str(exc)) from None


def xapi_router(ctx: ServiceContext) -> APIRouter:
    """`/xapi/about` (open) and `/xapi/statements` (behind the ingest token)."""
    store = StatementStore(ctx.schema)
    router = APIRouter(prefix="/xapi", tags=["xapi"], route_class=XapiRoute)
    guarded = [Depends(_token_guard(ctx.settings.ingest_token)), Depends(_version)]

    @router.get("/about")
    async def about() -> dict[str, list[str]]:
        """The xAPI versions this LRS speaks."""
        return {"version": [VERSION]}

    @router.put(
        "/statements",
        status_code=204,
        dependencies=guarded,
        responses={**ERRORS, **CONFLICT},
        openapi_extra=PUT_BODY,
    )
    async def put_statement(statement_id: StatementId, request: Request) -> Response:
        """Store one statement under `statementId`."""
        [(statement, doc)] = _statements_one(await _body(request))
        given = str(statement_id)
        if statement.id is not None and statement.id.lower() != given:
            raise HTTPException(
                400, f"the statement's id {statement.id} is not statementId {given}"
            )
        await _record(ctx, store, [(given, statement, {**doc, "id": given})])
        return Response(status_code=204)

    @router.post(
        "/statements",
        dependencies=guarded,
        responses={**ERRORS, **CONFLICT},
        openapi_extra=POST_BODY,
    )
    async def post_statements(request: Request) -> list[str]:
        """Store a statement or an array of statements; their ids, in order."""
        batch = []
        for statement, doc in _statements(await _body(request)):
            given = (statement.id or str(uuid.uuid4())).lower()
            batch.append((given, statement, {**doc, "id": given}))
        await _record(ctx, store, batch)
        return [i for i, _, _ in batch]

    @router.get(
        "/statements",
        dependencies=guarded,
        responses={
            **ERRORS,
            404: {"model": ErrorBody, "description": "no such statement, or it was voided"},
        },
        openapi_extra=VERSION_PARAMETER,
    )
    async def get_statement(statement_id: StatementId) -> dict[str, Any]:
        """One stored statement, as received (with `stored`), unless it was voided."""
        async with ctx.pool.acquire() as conn:
            found = await store.get(conn, str(statement_id))  # type: ignore[arg-type]
        if found is None or found[2]:
            why = "was voided" if found else "is not stored"
            raise HTTPException(404, f"statement {statement_id} {why}")
        doc, stored, _ = found
        return {**doc, "stored": stored.isoformat()}

    return router


def _statements_one(doc: Any) -> list[tuple[Statement, dict[str, Any]]]:
    if not isinstance(doc, dict):
        raise HTTPException(400, "PUT stores one statement: a JSON object")
    return _statements(doc)
