"""Readiness and lag are separate answers: a consumer's backlog shows in `service_status`
(what `GET /v1/status` and the lag gauge report) and never in `readiness` (`/readyz`)."""

from __future__ import annotations

import asyncpg
from prometheus_client import REGISTRY

from dxtalent_infra.status import readiness, service_status
from tests.integration.infra.test_consumer import Env, env, keys, running  # noqa: F401
from tests.support.polling import eventually


async def test_a_backlog_is_reported_as_lag_and_leaves_the_service_ready(
    env: Env,  # noqa: F811
) -> None:
    """Given a durable consumer with 7 messages waiting, then the status reports them pending
    and not caught up, the lag gauge says 7, and readiness is still 200-ready; once the
    consumer has applied them the status is caught up."""
    consumer = env.consumer(batch_size=5)
    await consumer.prepare()
    await env.publish(keys(7))
    behind = await service_status("svc", [consumer], None)
    assert behind.caught_up is False
    assert [(c.durable, c.pending, c.ack_pending) for c in behind.consumers] == [
        (env.durable, 7, 0)
    ]
    assert REGISTRY.get_sample_value("dxtalent_consumer_lag", {"consumer": env.durable}) == 7
    ready = await readiness(True, env.pool)
    assert ready == {"ready": True, "checks": {"nats": True, "postgres": True}}
    async with running(consumer):

        async def caught_up() -> bool:
            return (await service_status("svc", [consumer], None)).caught_up

        await eventually(caught_up, "the consumer applied its 7 messages")
    assert await env.rows() == (7, 7)


async def test_readiness_is_lost_when_nats_or_postgres_is(env: Env) -> None:  # noqa: F811
    """Given NATS disconnected or a closed PostgreSQL pool, readiness says not ready and names
    the server."""
    assert (await readiness(False, env.pool))["checks"] == {"nats": False, "postgres": True}
    closed = await asyncpg.create_pool(dsn=None, host="127.0.0.1", port=1, min_size=0)
    await closed.close()
    body = await readiness(True, closed)
    assert body == {"ready": False, "checks": {"nats": True, "postgres": False}}


async def test_readiness_is_a_gauge_and_its_changes_are_counted(env: Env) -> None:  # noqa: F811
    """Each check of a named service sets `dxtalent_ready`; a changed answer counts in
    `dxtalent_readiness_changes_total` (exported at 0 from the first check, so that an
    alert's increase() sees the first change)."""
    service = f"svc-{env.durable}"
    labels = {"service": service}

    def sample(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    await readiness(True, env.pool, service=service)
    assert (sample("dxtalent_ready"), sample("dxtalent_readiness_changes_total")) == (1, 0)
    await readiness(True, env.pool, service=service)
    await readiness(False, env.pool, service=service)
    assert (sample("dxtalent_ready"), sample("dxtalent_readiness_changes_total")) == (0, 1)
    await readiness(True, env.pool, service=service)
    assert (sample("dxtalent_ready"), sample("dxtalent_readiness_changes_total")) == (1, 2)
