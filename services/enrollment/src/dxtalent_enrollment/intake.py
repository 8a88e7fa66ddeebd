"""What the enrollment service's HTTP doors share: their token, a bounded body, and publishing
accepted facts to `DX_INBOUND` with JetStream's acknowledgement awaited.

- The intake has its own token, `DXT_INGEST_TOKEN`, apart from the query token. Unset, the doors
  are closed: every request is answered 503 naming the setting.
- A body larger than `MAX_BODY_BYTES` is refused with 413 before it is read whole.
- `publish_facts` sends each fact on its type's subject with `Nats-Msg-Id` = its id and returns,
  per fact, whether JetStream already held it (`PubAck.duplicate`). If JetStream does not
  acknowledge every fact, the request fails with 503: sending it again is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from fastapi import HTTPException, Request
from nats.errors import Error as NatsError
from prometheus_client import Counter
from pydantic import SecretStr

from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_contracts.inbound import InboundEvent
from dxtalent_infra import tracing
from dxtalent_infra.http_api import ErrorBody, bearer_guard, bearer_scheme
from dxtalent_infra.runtime import ServiceContext

log = structlog.get_logger(__name__)

SETTING = "DXT_INGEST_TOKEN"
BEARER_SCHEME = "ingestBearer"
MAX_BODY_BYTES = 1_048_576
"""The largest request body either door reads (1 MiB); a larger one is answered 413."""

INTAKE_EVENTS = Counter(
    "dxtalent_http_intake_total",
    "Facts and statements the HTTP doors received, by door and outcome.",
    ["door", "outcome"],
)

Guard = Callable[..., Awaitable[None]]

TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": f"the body is larger than {MAX_BODY_BYTES} bytes"}
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": f"the intake is closed ({SETTING} unset), or JetStream did not "
        "acknowledge every fact: send the same request again",
    }
}


def closed_guard() -> Guard:
    """The guard of a service without `DXT_INGEST_TOKEN`: every request is 503."""

    async def guard() -> None:
        raise HTTPException(
            503,
            f"the HTTP intake is closed: set {SETTING} on the enrollment service to open it",
        )

    return guard


def ingest_bearer_guard(token: SecretStr | None) -> Guard:
    """`Authorization: Bearer <DXT_INGEST_TOKEN>`, or 503 when the token is not set."""
    if token is None:
        return closed_guard()
    return bearer_guard(token, SETTING, bearer_scheme(BEARER_SCHEME, SETTING))


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, or 413 as soon as it is known to exceed `limit` bytes."""
    too_large = HTTPException(
        413, f"the body is larger than {limit} bytes; send fewer events per request"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def publish_facts(ctx: ServiceContext, facts: Sequence[InboundEvent]) -> list[bool]:
    """Publish each fact to `DX_INBOUND` and await every acknowledgement; per fact, whether
    JetStream reported it a duplicate. 503 when JetStream does not acknowledge them all."""

    async def one(fact: InboundEvent) -> bool:
        headers = {"Nats-Msg-Id": fact.id, "Content-Type": CONTENT_TYPE}
        tracing.inject(headers)  # the request's trace continues in enrollment's consumer
        ack = await ctx.js.publish(
            ctx.topology.subject(fact.nats_subject), fact.to_json_bytes(), headers=headers
        )
        return bool(ack.duplicate)

    results = await asyncio.gather(*(one(f) for f in facts), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        if not all(isinstance(r, NatsError | TimeoutError) for r in failed):
            raise failed[0]
        log.error("intake.publish_failed", failed=len(failed), of=len(facts), error=repr(failed[0]))
        raise HTTPException(
            503,
            f"JetStream did not acknowledge {len(failed)} of {len(facts)} facts "
            f"({failed[0]!r}); nothing is lost by sending the same request again",
            headers={"Retry-After": "5"},
        )
    return [bool(r) for r in results]
