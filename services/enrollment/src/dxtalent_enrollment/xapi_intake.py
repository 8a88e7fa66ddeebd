"""Recording xAPI statements: store them (all or nothing), then publish the facts they mean.

The statements of one request are stored in one transaction; an id already stored with other
content is a `ConflictError` and nothing is stored. Then, from the stored statements (the first
storage's time, for a statement sent again), the facts are worked out (`xapi.facts_for`) and
published; only then is the request answered. A crash between storing and publishing is
repaired by the client's retry: the same statements are "no change" to the store, and their
facts are published again under the same ids.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import asyncpg
import structlog

from dxtalent_enrollment import xapi
from dxtalent_enrollment.domain import InboundProblem, check_inbound
from dxtalent_enrollment.intake import INTAKE_EVENTS, publish_facts
from dxtalent_enrollment.statements import StatementStore
from dxtalent_enrollment.xapi_model import Statement
from dxtalent_infra.runtime import ServiceContext

log = structlog.get_logger(__name__)


class ConflictError(Exception):
    """Statement ids already stored with other content."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(
            f"statements {ids} are already stored with other content; a statement id is "
            "never reused (send the statement under a new id)"
        )


async def _store(
    conn: asyncpg.Connection,
    store: StatementStore,
    batch: list[tuple[xapi.Received, dict[str, Any]]],
) -> tuple[list[xapi.Received], dict[str, xapi.Received], list[xapi.Received]]:
    """Store the batch; the stored statements, those they void, and those that void them."""
    existing = await store.insert(conn, batch)
    sent = {r.id: doc for r, doc in batch}
    conflicts = [
        i for i, doc in existing.items() if xapi.comparable(doc) != xapi.comparable(sent[i])
    ]
    if conflicts:
        raise ConflictError(conflicts)
    received = await store.by_ids(conn, list(sent))
    targets = [r.voids for r in received if r.voids is not None]
    voiders = await store.voiding(conn, list(sent))
    known = {r.id: r for r in [*received, *await store.by_ids(conn, targets)]}
    return received, known, voiders


def _log(
    ctx: ServiceContext, received: list[xapi.Received], known: dict[str, xapi.Received]
) -> None:
    for r in received:
        outcome, why = xapi.meaning(ctx.catalog, r, known)
        INTAKE_EVENTS.labels(door="xapi", outcome=outcome).inc()
        log.info("xapi.statement", statement_id=r.id, outcome=outcome, why=why or None)


async def record(
    ctx: ServiceContext,
    store: StatementStore,
    statements: list[tuple[str, Statement, dict[str, Any]]],
) -> None:
    """Store (id, statement, as received) triples and publish their facts; `ConflictError` when an
    id is stored with other content."""
    now = dt.datetime.now(dt.UTC)
    batch = [(xapi.Received(i, s, now), doc) for i, s, doc in statements]
    async with ctx.pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        async with conn.transaction():
            received, known, voiders = await _store(conn, store, batch)
    _log(ctx, received, known)
    facts = xapi.facts_for(ctx.catalog, received, known, voiders)
    for fact in facts:
        problem = check_inbound(ctx.catalog, fact.to_json_bytes())
        if isinstance(problem, InboundProblem):  # enrollment dead-letters it with this reason
            log.warning("xapi.fact_refused", fact_id=fact.id, reason=problem.reason)
    await publish_facts(ctx, facts)
