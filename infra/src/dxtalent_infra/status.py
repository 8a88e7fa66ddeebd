"""Readiness and lag of a running service, kept apart on purpose.

- `readiness`: can the service serve? Connected to NATS, PostgreSQL answering (migrations were
  applied before the HTTP server started). A backlog does not make a service unready, so
  replicas stay in the Kubernetes Service and drains are not blocked while they catch up.
- `service_status`: how far behind is it? Each consumer's messages pending in the stream and
  delivered but not yet acknowledged, the outbox backlog, and `caught_up` when all are zero.
  Served as `GET /v1/status` (behind the bearer token, like the other `/v1` routes) and read by
  `dxtalent status`, the demo and the tests that need "caught up".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg
from fastapi import APIRouter
from pydantic import BaseModel, Field

from dxtalent_infra import metrics
from dxtalent_infra.http_api import v1_router
from dxtalent_infra.outbox import OutboxRelay
from dxtalent_infra.settings import Settings


class _Consumer(Protocol):
    @property
    def durable(self) -> str: ...

    async def pending_counts(self) -> tuple[int, int]: ...


class ConsumerStatus(BaseModel):
    """One durable consumer; the counts are null when NATS did not answer."""

    durable: str
    pending: int | None = Field(description="messages in the stream not yet delivered to it")
    ack_pending: int | None = Field(description="delivered, not yet acknowledged")


class ServiceStatus(BaseModel):
    """How far behind a service is; `caught_up` when nothing is left to apply or publish."""

    service: str
    caught_up: bool
    consumers: list[ConsumerStatus]
    outbox_backlog: int | None = Field(
        description="committed events not yet published (null: the service keeps no outbox, "
        "or PostgreSQL did not answer)"
    )


async def readiness(
    nats_connected: bool, pool: asyncpg.Pool, *, service: str | None = None
) -> dict[str, Any]:
    """Ready = connected to NATS and PostgreSQL answering; lag is `service_status`'s business.
    With `service`, the answer also sets `dxtalent_ready` and counts a change of it in
    `dxtalent_readiness_changes_total` (probes and scrapes both check)."""
    checks = {"nats": nats_connected, "postgres": True}
    try:
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
    except Exception:
        checks["postgres"] = False
    ready = all(checks.values())
    if service is not None:
        record_readiness(service, ready)
    return {"ready": ready, "checks": checks}


_last_readiness: dict[str, bool] = {}


def record_readiness(service: str, ready: bool) -> None:
    """Set the readiness gauge of `service`; count it when it differs from the last check."""
    previous = _last_readiness.get(service)
    _last_readiness[service] = ready
    metrics.READY.labels(service).set(1 if ready else 0)
    changes = metrics.READINESS_CHANGES.labels(service)  # exported from 0, so increase() sees 1
    if previous is not None and previous != ready:
        changes.inc()


async def _consumer_status(consumer: _Consumer) -> ConsumerStatus:
    try:
        pending, ack_pending = await consumer.pending_counts()
    except Exception:
        return ConsumerStatus(durable=consumer.durable, pending=None, ack_pending=None)
    return ConsumerStatus(durable=consumer.durable, pending=pending, ack_pending=ack_pending)


async def outbox_backlog(relay: OutboxRelay | None) -> int | None:
    """Committed events waiting in the outbox (also the `dxtalent_outbox_backlog` gauge)."""
    if relay is None:
        return None
    try:
        backlog = await relay.pending()
    except Exception:
        return None
    metrics.OUTBOX_BACKLOG.labels(relay.schema).set(backlog)
    return backlog


async def service_status(
    name: str, consumers: Sequence[_Consumer], relay: OutboxRelay | None
) -> ServiceStatus:
    """The lag of every consumer and the outbox backlog of service `name`."""
    states = [await _consumer_status(c) for c in consumers]
    backlog = await outbox_backlog(relay)
    caught_up = all(s.pending == 0 and s.ack_pending == 0 for s in states) and (
        relay is None or backlog == 0
    )
    return ServiceStatus(
        service=name, caught_up=caught_up, consumers=states, outbox_backlog=backlog
    )


def status_router(
    settings: Settings, name: str, consumers: Sequence[_Consumer], relay: OutboxRelay | None
) -> APIRouter:
    """`GET /v1/status`: the service's lag, behind the bearer token like every `/v1` route."""
    router = v1_router(settings, tags=["status"])

    @router.get("/status", response_model=ServiceStatus)
    async def status() -> ServiceStatus:
        """Each consumer's pending and ack-pending messages, the outbox backlog, and
        `caught_up` when all are zero. Always 200: a backlog is not an error."""
        return await service_status(name, consumers, relay)

    return router
