"""ensure_streams against a real JetStream: the contract's three streams, created once and
updated in place when the configuration changes; await_streams, a service's read-only check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js.api import RetentionPolicy, StorageType

from dxtalent_infra.nats import connect_nats
from dxtalent_infra.streams import (
    ReplicasError,
    StreamsMissingError,
    await_streams,
    ensure_streams,
)
from dxtalent_infra.topology import Topology
from tests.support.cluster import NatsCluster
from tests.support.polling import eventually


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    conn = await connect_nats(nats_url, name="test-streams")
    yield conn
    await conn.close()


async def test_streams_are_created_once_with_the_contract_configuration(
    nc: Client, topology: Topology
) -> None:
    """Ensuring twice gives the same three file-backed, limits-retention streams."""
    js = nc.jetstream()
    first = await ensure_streams(js, topology)
    again = await ensure_streams(js, topology)
    assert [i.config.name for i in first] == [i.config.name for i in again]
    assert [i.created for i in first] == [i.created for i in again]
    assert all(i.created is not None for i in first)
    by_name = {i.config.name: i.config for i in again}
    p = topology.prefix
    assert {name: cfg.subjects for name, cfg in by_name.items()} == {
        f"{p.upper()}_DX_INBOUND": [f"{p}.dx.inbound.>"],
        f"{p.upper()}_DX_EVENTS": [f"{p}.dx.events.>"],
        f"{p.upper()}_DX_DEADLETTER": [f"{p}.dx.deadletter.>"],
    }
    for cfg in by_name.values():
        assert cfg.storage == StorageType.FILE
        assert cfg.retention == RetentionPolicy.LIMITS
        assert cfg.num_replicas == 1
        assert cfg.duplicate_window == pytest.approx(600.0)


async def test_a_changed_duplicate_window_updates_the_streams_in_place(
    nc: Client, topology: Topology
) -> None:
    """Existing streams with another duplicate window are updated, keeping their messages."""
    js = nc.jetstream()
    await ensure_streams(js, topology)
    await js.publish(topology.subject("dx.events.test"), b"{}", headers={"Nats-Msg-Id": "m1"})
    updated = await ensure_streams(js, topology, duplicate_window_s=1200.0)
    assert all(i.config.duplicate_window == pytest.approx(1200.0) for i in updated)
    events = await js.stream_info(topology.stream("DX_EVENTS"))
    assert events.config.duplicate_window == pytest.approx(1200.0)
    assert events.state.messages == 1


async def test_a_duplicate_window_shorter_than_the_relay_retries_is_refused(
    nc: Client, topology: Topology
) -> None:
    """A window that several relay retries do not fit in could let republished events through."""
    with pytest.raises(ValueError, match=r"duplicate window 60\.0s is shorter"):
        await ensure_streams(nc.jetstream(), topology, duplicate_window_s=60.0)


async def test_replicas_a_single_server_cannot_hold_are_refused_saying_so(
    nc: Client, topology: Topology
) -> None:
    """DXT_STREAM_REPLICAS=3 on one NATS server (no cluster): a ReplicasError that says so
    and what to set, instead of R1 streams or JetStream's bare error."""
    with pytest.raises(ReplicasError, match="a single NATS server without a cluster") as err:
        await ensure_streams(nc.jetstream(), topology, replicas=3)
    assert "set DXT_STREAM_REPLICAS to at most the number of JetStream servers" in str(err.value)


async def test_on_a_cluster_r1_streams_become_r3_and_r5_is_refused(
    nats_cluster: NatsCluster, topology: Topology
) -> None:
    """On a 3-node cluster: streams an earlier start left at R1 are raised to the R3 asked
    for, each with a leader and two replicas; R5 is a ReplicasError naming the shortfall."""
    conn = await connect_nats(nats_cluster.url, name="test-streams-cluster")
    try:
        js = conn.jetstream()
        assert {i.config.num_replicas for i in await ensure_streams(js, topology)} == {1}
        raised = await ensure_streams(js, topology, replicas=3)
        assert {i.config.num_replicas for i in raised} == {3}

        async def each_on_three_nodes() -> bool:
            infos = [await js.stream_info(i.config.name or "") for i in raised]
            return all(i.cluster and len(i.cluster.replicas or []) == 2 for i in infos)

        await eventually(each_on_three_nodes, "the new replicas placed", within=30)
        with pytest.raises(ReplicasError, match="fewer than 5 JetStream servers"):
            await ensure_streams(js, topology, replicas=5)
    finally:
        await conn.close()


async def test_a_service_waits_for_provisioned_streams_and_never_changes_them(
    nc: Client, topology: Topology
) -> None:
    """Without DXT_PROVISION_STREAMS a service only reads: missing streams end its wait with
    a message naming `dxtalent provision`; provisioned ones are returned as they are, even
    when their replica count or window differs from its settings."""
    js = nc.jetstream()
    with pytest.raises(StreamsMissingError, match="dxtalent provision"):
        await await_streams(js, topology, wait_s=0.3)
    await ensure_streams(js, topology, duplicate_window_s=1200.0)
    found = await await_streams(js, topology, duplicate_window_s=600.0)
    assert [i.config.duplicate_window for i in found] == [1200.0] * 3
