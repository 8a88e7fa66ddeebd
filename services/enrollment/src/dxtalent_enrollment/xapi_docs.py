"""What the OpenAPI document says of the xAPI resource: the version header, the bodies (loosely:
a statement is validated by the service, `xapi_model`) and the error answers."""

from __future__ import annotations

from typing import Any

from dxtalent_enrollment.intake import SETTING, TOO_LARGE, UNAVAILABLE
from dxtalent_infra.http_api import ErrorBody

VERSION = "1.0.3"
VERSION_HEADER = "X-Experience-API-Version"
VERSION_PARAMETER = {
    "parameters": [
        {
            "name": VERSION_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string", "pattern": r"^1\.0(\.[0-9]+)?$", "example": VERSION},
        }
    ]
}
_EXAMPLE = {
    "actor": {"account": {"homePage": "https://lms.city.hirakata.example", "name": "E000123"}},
    "verb": {"id": "http://adlnet.gov/expapi/verbs/completed", "display": {"en-US": "completed"}},
    "object": {"id": "https://lms.city.hirakata.example/courses/DX-101"},
    "timestamp": "2025-06-12T09:30:00+09:00",
}
_STATEMENT = {"type": "object", "description": "an xAPI 1.0.3 statement", "example": _EXAMPLE}
PUT_BODY = VERSION_PARAMETER | {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _STATEMENT}}}
}
POST_BODY = VERSION_PARAMETER | {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"anyOf": [_STATEMENT, {"type": "array", "items": _STATEMENT}]}
            }
        },
    }
}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "no or another X-Experience-API-Version, or a malformed statement",
    },
    401: {"model": ErrorBody, "description": f"no {SETTING} as Bearer or Basic password"},
    **TOO_LARGE,
    **UNAVAILABLE,
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "a statement id already stored with other content"}
}
