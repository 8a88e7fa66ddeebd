"""The enrollment service's HTTP doors for HR and learning systems, behind `DXT_INGEST_TOKEN`:
`POST /v1/facts` (CloudEvents, `facts_http`) and the xAPI statements resource under `/xapi`
(`xapi_http`)."""

from __future__ import annotations

from fastapi import APIRouter

from dxtalent_enrollment import statements
from dxtalent_enrollment.facts_http import facts_router
from dxtalent_enrollment.xapi_http import xapi_router
from dxtalent_infra.runtime import ServiceContext

#: The enrollment service's read-model migrations: the xAPI statements it stores.
MIGRATIONS = ((statements.COMPONENT, statements.MIGRATIONS),)
PRIVILEGES = statements.PRIVILEGES


def routes(ctx: ServiceContext) -> APIRouter:
    """Every route of the enrollment service."""
    router = APIRouter()
    router.include_router(facts_router(ctx))
    router.include_router(xapi_router(ctx))
    return router
