"""Servers in containers through a real Docker-API engine (skipped when none answers)."""

from __future__ import annotations

import contextlib

import asyncpg
import nats
import pytest

from tests.support import containers, servers

_NO_ENGINE = containers.engine_unavailable()
pytestmark = pytest.mark.skipif(_NO_ENGINE is not None, reason=f"{_NO_ENGINE}")


async def test_containers_run_on_the_host_network_and_answer_on_loopback() -> None:
    """NATS (with JetStream) and PostgreSQL containers share the host network, on 127.0.0.1."""
    nats_spec, pg_spec = containers.nats_spec(), containers.postgres_spec()
    with contextlib.ExitStack() as stack:
        nats_url = containers.start(stack, nats_spec)
        database_url = containers.start(stack, pg_spec)

        nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
        account = await nc.jetstream().account_info()
        await nc.close()
        conn = await asyncpg.connect(database_url, timeout=5)
        address = await conn.fetchval("SELECT host(inet_server_addr())")
        await conn.close()

        import docker

        engine = docker.from_env(timeout=containers.ENGINE_TIMEOUT_S)
        for spec in (nats_spec, pg_spec):
            inspected = engine.containers.get(f"dxt-test-{spec.what.lower()}-{spec.port}")
            assert inspected.attrs["HostConfig"]["NetworkMode"] == "host"
    assert account.limits is not None
    assert address == "127.0.0.1"


def test_an_image_that_cannot_run_means_embedded_servers_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing image is named in a ContainerFallbackWarning, and no container is left."""
    monkeypatch.setattr(servers, "SOURCES", [])
    monkeypatch.setenv("DXT_TEST_NATS_IMAGE", "localhost/dxtalent-test-nats:absent")

    with (
        contextlib.ExitStack() as stack,
        pytest.warns(servers.ContainerFallbackWarning, match="dxtalent-test-nats:absent"),
    ):
        urls = servers._from_containers(stack, want_nats=True, want_pg=True)

    assert urls is None
