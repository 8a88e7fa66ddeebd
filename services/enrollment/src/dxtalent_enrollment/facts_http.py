"""`POST /v1/facts`: inbound facts over HTTP, in any CloudEvents HTTP mode (`cloudevents_http`).

Every event is put through the enrollment service's one check (`check_inbound`: contract and
catalog) before anything is sent. The accepted ones go to `DX_INBOUND` with `Nats-Msg-Id` = id,
and the answer comes once JetStream acknowledged them all. The answer lists each event, in
request order: `accepted`, `duplicate` (already recorded by enrollment, earlier in the same
request, or held by JetStream within its de-duplication window) or `rejected` with the reason.
Status 202 when no event was rejected, 207 when some were (the accepted ones are sent all the
same); 400/415 when the body is not events at all, 413 when it is too large. Sending the same
request again is harmless: facts are idempotent by (source, id).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dxtalent_contracts.events import FieldError
from dxtalent_contracts.inbound import InboundEvent
from dxtalent_enrollment import cloudevents_http as ce
from dxtalent_enrollment.domain import InboundProblem, check_inbound, fact_event_id
from dxtalent_enrollment.intake import (
    INTAKE_EVENTS,
    TOO_LARGE,
    UNAVAILABLE,
    ingest_bearer_guard,
    publish_facts,
    read_body,
)
from dxtalent_infra.http_api import UNAUTHORIZED, ErrorBody
from dxtalent_infra.runtime import ServiceContext

log = structlog.get_logger(__name__)

Outcome = Literal["accepted", "duplicate", "rejected"]


class FactResult(BaseModel):
    """What became of one event of the request."""

    id: str | None
    source: str | None
    type: str | None
    outcome: Outcome
    reason: str | None = None
    errors: list[FieldError] = []


class FactsAnswer(BaseModel):
    """Counts per outcome, and each event's result in request order."""

    accepted: int
    duplicate: int
    rejected: int
    results: list[FactResult]


_EXAMPLE = {
    "specversion": "1.0",
    "id": "lms-2025-000123",
    "source": "urn:hirakata:lms",
    "type": "dxtalent.lms.CourseCompleted.v1",
    "subject": "E000123",
    "time": "2025-06-12T09:30:00+09:00",
    "data": {"employee_id": "E000123", "course_id": "DX-101", "completed_on": "2025-06-12"},
}
_ANY_EVENT = {"type": "object", "description": "a CloudEvent of an inbound type (docs/contract.md)"}
REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            ce.STRUCTURED: {"schema": _ANY_EVENT, "example": _EXAMPLE},
            ce.BATCH: {
                "schema": {
                    "type": "array",
                    "items": _ANY_EVENT,
                    "minItems": 1,
                    "maxItems": ce.MAX_BATCH_EVENTS,
                },
                "example": [_EXAMPLE],
            },
            ce.BINARY: {
                "schema": {"type": "object", "description": "binary mode: the event's data"},
                "example": _EXAMPLE["data"],
            },
        },
    }
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    207: {"model": FactsAnswer, "description": "some events were rejected; the rest were sent"},
    400: {"model": ErrorBody, "description": "the body is not CloudEvents in the mode named"},
    415: {"model": ErrorBody, "description": "a Content-Type that is no CloudEvents mode"},
    **UNAUTHORIZED,
    **TOO_LARGE,
    **UNAVAILABLE,
}

CeHeader = Annotated[str | None, Header(description="binary mode: a CloudEvents attribute")]


def _result(raw: bytes, outcome: Outcome, problem: InboundProblem | None = None) -> FactResult:
    return FactResult(
        id=ce.attribute(raw, "id"),
        source=ce.attribute(raw, "source"),
        type=ce.attribute(raw, "type"),
        outcome=outcome,
        reason=problem.reason if problem else None,
        errors=problem.errors if problem else [],
    )


async def _send(ctx: ServiceContext, raws: list[bytes]) -> list[FactResult]:
    """Check every event, send the acceptable new ones, and say what became of each."""
    checked = [check_inbound(ctx.catalog, raw) for raw in raws]
    keys = [fact_event_id(c.source, c.id) for c in checked if not isinstance(c, InboundProblem)]
    recorded = await ctx.store.existing_event_ids(keys)
    outcomes: dict[int, Outcome] = {}
    to_send: dict[str, tuple[int, InboundEvent]] = {}
    for i, c in enumerate(checked):
        if isinstance(c, InboundProblem):
            continue
        key = fact_event_id(c.source, c.id)
        if key in recorded or key in to_send:
            outcomes[i] = "duplicate"
        else:
            to_send[key] = (i, c)
    acks = await publish_facts(ctx, [event for _, event in to_send.values()])
    for (i, _), duplicate in zip(to_send.values(), acks, strict=True):
        outcomes[i] = "duplicate" if duplicate else "accepted"
    return [
        _result(raw, "rejected", c) if isinstance(c, InboundProblem) else _result(raw, outcomes[i])
        for i, (raw, c) in enumerate(zip(raws, checked, strict=True))
    ]


def facts_router(ctx: ServiceContext) -> APIRouter:
    """`POST /v1/facts`, behind `DXT_INGEST_TOKEN`."""
    guard = ingest_bearer_guard(ctx.settings.ingest_token)
    router = APIRouter(prefix="/v1", tags=["intake"], dependencies=[Depends(guard)])

    @router.post(
        "/facts",
        status_code=202,
        response_model=FactsAnswer,
        responses=RESPONSES,
        openapi_extra=REQUEST_BODY,
    )
    async def post_facts(
        request: Request,
        ce_specversion: CeHeader = None,
        ce_id: CeHeader = None,
        ce_source: CeHeader = None,
        ce_type: CeHeader = None,
    ) -> JSONResponse:
        """Inbound facts as CloudEvents: structured, batched or binary mode (the `ce-*`
        headers are read whole from the request; the four named here are the required ones)."""
        body = await read_body(request)
        try:
            raws = ce.read_events(request.headers.get("content-type"), body, request.headers)
        except ce.UnreadableError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        results = await _send(ctx, raws)
        answer = FactsAnswer(
            accepted=sum(r.outcome == "accepted" for r in results),
            duplicate=sum(r.outcome == "duplicate" for r in results),
            rejected=sum(r.outcome == "rejected" for r in results),
            results=results,
        )
        for r in results:
            INTAKE_EVENTS.labels(door="cloudevents", outcome=r.outcome).inc()
            if r.outcome == "rejected":
                log.warning("intake.rejected", fact_id=r.id, source=r.source, reason=r.reason)
        status = 207 if answer.rejected else 202
        return JSONResponse(answer.model_dump(mode="json"), status_code=status)

    return router
