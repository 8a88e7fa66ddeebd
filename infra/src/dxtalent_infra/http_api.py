"""What every service's `/v1` HTTP API shares, written once: the bearer token and error bodies.

- `v1_router(settings, tags)`: the `/v1` router of a service. When `DXT_API_TOKEN` is set its
  routes need `Authorization: Bearer <token>`: the scheme is case-insensitive, the token is
  compared in constant time, and OpenAPI declares the `bearerAuth` security scheme on them. A
  request without a bearer token gets 401 with `WWW-Authenticate: Bearer realm="dxtalent"`;
  one with another token gets the same plus `error="invalid_token"` (RFC 6750, section 3).
- Every error body is JSON a person can act on: `{"detail": "..."}` (`ErrorBody`), and for a
  parameter the API does not accept, 422 with `{"message": "...", "detail": [...]}`
  (`ValidationErrorBody`), whether pydantic or a service's own rule (`invalid_parameter`)
  refused it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, SecretStr

from dxtalent_infra.settings import Settings

log = structlog.get_logger(__name__)

REALM = "dxtalent"
SECURITY_SCHEME = "bearerAuth"


class ErrorBody(BaseModel):
    """An error: what was wrong and what to do about it, in words."""

    detail: str


class FieldError(BaseModel):
    """One parameter the API did not accept: where (`["query", "as_of"]`), why, and the value."""

    loc: list[str | int]
    msg: str
    type: str
    input: str | int | float | bool | None = None


class ValidationErrorBody(BaseModel):
    """422: `message` sums up every refused parameter; `detail` lists them one by one."""

    message: str
    detail: list[FieldError]


UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "no bearer token, or not the service's `DXT_API_TOKEN`",
    }
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ValidationErrorBody,
        "description": "a parameter is not one the API accepts; `message` says which and why",
    }
}


def _unauthorized(detail: str, error: str | None) -> HTTPException:
    """401 with an RFC 6750 Bearer challenge naming what was wrong."""
    challenge = f'Bearer realm="{REALM}"'
    if error is not None:
        challenge += f', error="{error}", error_description="{detail}"'
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def bearer_scheme(scheme_name: str, setting: str) -> HTTPBearer:
    """The OpenAPI bearer security scheme `scheme_name`, whose token is the setting `setting`."""
    return HTTPBearer(
        auto_error=False,  # `bearer_guard` answers 401 with an RFC 6750 challenge itself
        scheme_name=scheme_name,
        description=f"the service's {setting}",
    )


_BEARER = bearer_scheme(SECURITY_SCHEME, "DXT_API_TOKEN")


def same_token(given: str, expected: SecretStr) -> bool:
    """Constant-time comparison of a token from a header with the configured one (header values
    arrive decoded as latin-1: the bytes the client sent are compared; a Basic password arrives
    decoded as UTF-8)."""
    try:
        sent = given.encode("latin-1")
    except UnicodeEncodeError:
        sent = given.encode("utf-8")
    return hmac.compare_digest(sent, expected.get_secret_value().encode("utf-8"))


def bearer_guard(
    token: SecretStr, setting: str = "DXT_API_TOKEN", scheme: HTTPBearer = _BEARER
) -> Callable[..., Awaitable[None]]:
    """A dependency that lets a request through only with `Authorization: Bearer <token>`,
    `token` being the value of `setting`; OpenAPI declares it as `scheme`."""

    # a default, not an annotation: annotations are strings here and `scheme` is local
    async def guard(
        credentials: HTTPAuthorizationCredentials | None = Depends(scheme),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise _unauthorized(
                "this request needs the header 'Authorization: Bearer <token>' "
                f"with the service's {setting}",
                error=None,
            )
        if not same_token(credentials.credentials, token):
            raise _unauthorized(
                f"the bearer token is not this service's {setting}", error="invalid_token"
            )

    return guard


def v1_router(settings: Settings, tags: Sequence[str]) -> APIRouter:
    """The `/v1` router of a service, behind the bearer token when `DXT_API_TOKEN` is set."""
    if settings.api_token is None:
        log.warning("http.no_api_token", hint="set DXT_API_TOKEN to require a bearer token")
        return APIRouter(prefix="/v1", tags=list(tags))
    return APIRouter(
        prefix="/v1",
        tags=list(tags),
        dependencies=[Depends(bearer_guard(settings.api_token))],
        responses=UNAUTHORIZED,
    )


def invalid_parameter(where: str, name: str, problem: str, value: object) -> Exception:
    """A 422 for a parameter that breaks a rule of the service, shaped like pydantic's."""
    error = {"type": "value_error", "loc": (where, name), "msg": problem, "input": value}
    return RequestValidationError([error])


def _field_error(error: dict[str, Any]) -> FieldError:
    value = error.get("input")
    if not isinstance(value, str | int | float | bool | None):
        value = repr(value)
    message = str(error["msg"]).removeprefix("Value error, ")
    return FieldError(loc=list(error.get("loc", ())), msg=message, type=error["type"], input=value)


def _sentence(error: FieldError) -> str:
    """'query parameter fiscal_year: Input should be ... (got '1999')', or the rule's own words
    where they already name the parameter."""
    where, *path = error.loc or ["request"]
    name = ".".join(map(str, path))
    place = f"{where} parameter {name}" if name else str(where)
    if error.type == "missing":
        return f"{place} is required"
    text = error.msg if name and error.msg.startswith(name) else f"{place}: {error.msg}"
    if error.input is None or str(error.input) in text:
        return text
    return f"{text} (got {error.input!r})"


async def validation_failed(_: Request, exc: Exception) -> JSONResponse:
    """The 422 of every service: which parameters were refused, and why."""
    assert isinstance(exc, RequestValidationError)
    problems = [_field_error(e) for e in exc.errors()]
    body = ValidationErrorBody(message="; ".join(map(_sentence, problems)), detail=problems)
    return JSONResponse(body.model_dump(mode="json"), status_code=422)
