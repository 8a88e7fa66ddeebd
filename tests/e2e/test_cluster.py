"""The system on a 3-node NATS cluster with R3 streams, nodes killed while facts arrive."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest

from dxtalent.citygen import generate_city
from dxtalent.demo import DEMO_SEED
from dxtalent.errors import UserError
from dxtalent.nats_tools import publish_raw
from dxtalent.stack import LocalStack
from dxtalent_contracts.catalog import load_catalog
from dxtalent_infra.nats import connect_nats
from dxtalent_infra.settings import nats_servers
from dxtalent_infra.streams import ensure_streams
from dxtalent_infra.topology import ALL_STREAMS, EVENTS, INBOUND, Topology
from tests.e2e.conftest import _cleanup
from tests.e2e.helpers import assert_matches_core, events_on, no_duplicate_ids
from tests.support.cluster import NatsCluster
from tests.support.ports import reserved_port_run
from tests.support.servers import ServerUrls, unique_token

CATALOG = load_catalog()
STAFF = 300
"""A smaller city than the demo's (1,056 facts) keeps the test near a minute."""
WINDOW = 64
"""Facts per pipelined window of the publisher: each kill lands while a window is out."""
KILL_DELAY_S = 0.02


@pytest.fixture
def cluster_system(nats_cluster: NatsCluster, server_urls: ServerUrls) -> Iterator[LocalStack]:
    """The three services as processes on the cluster (all its URLs), streams at R3."""
    topology = Topology(unique_token())
    data_dir = Path(tempfile.mkdtemp(prefix="dxt-e2e-cluster-"))
    stack = LocalStack(
        data_dir,
        nats_cluster.url,
        server_urls.database_url,
        prefix=topology.prefix,
        extra_env={
            "DXT_STREAM_REPLICAS": "3",
            "DXT_RELAY_POLL_INTERVAL_S": "0.5",
            "DXT_LOG_LEVEL": "info",
        },
    )
    stack.start_services()
    try:
        stack.wait_ready(timeout=90, settle_checks=1)
        yield stack
    finally:
        stack.stop()
        asyncio.run(_cleanup(server_urls, topology))
        shutil.rmtree(data_dir, ignore_errors=True)


async def _stream_state(url: str, topology: Topology) -> dict[str, tuple[int, int]]:
    """Per stream: (replicas, messages). Retried for up to 30 s while a node that died has
    left the cluster electing leaders (stream info times out meanwhile)."""
    deadline = time.monotonic() + 30
    while True:
        nc = await nats.connect(nats_servers(url))
        try:
            js = nc.jetstream()
            out = {}
            for spec in ALL_STREAMS:
                info = await js.stream_info(topology.stream(spec.name))
                replicas = 1 + len(info.cluster.replicas or []) if info.cluster else 1
                out[spec.name] = (replicas, info.state.messages)
            return out
        except nats.errors.TimeoutError:
            if time.monotonic() > deadline:
                raise
        finally:
            await nc.close()
        await asyncio.sleep(0.5)


class KillPlan:
    """The publisher's progress callback that kills nodes mid-run: a quarter in, the node the
    publisher is connected to; half-way, the DX_EVENTS leader; three quarters in, the
    DX_INBOUND leader. Each kill lands a moment after the next window went out (SIGKILL from
    a timer thread), so acks are lost in flight; each killed node is restarted before the
    next kill, so two of three nodes (a quorum) are always up."""

    def __init__(self, cluster: NatsCluster, topology: Topology, total_windows: int) -> None:
        self.cluster = cluster
        self.plan: dict[int, Callable[[], str]] = {
            total_windows // 4: lambda: cluster.node_of_client("dxtalent-publish"),
            total_windows // 2: lambda: cluster.stream_leader(topology.stream(EVENTS.name)),
            3 * total_windows // 4: lambda: cluster.stream_leader(topology.stream(INBOUND.name)),
        }
        self.windows = 0
        self.timer: threading.Timer | None = None

    def __call__(self, _: int) -> None:
        self.windows += 1
        find_victim = self.plan.get(self.windows)
        if find_victim is None:
            return
        self.wait()
        for node in self.cluster.nodes:
            if not node.running:
                self.cluster.restart(node.name)
        self.timer = threading.Timer(KILL_DELAY_S, self.cluster.kill, args=(find_victim(),))
        self.timer.start()

    def wait(self) -> None:
        """The last kill done."""
        if self.timer is not None:
            self.timer.join()


def test_a_cluster_losing_the_publishers_node_and_stream_leaders_gives_what_the_core_computes(
    nats_cluster: NatsCluster, cluster_system: LocalStack
) -> None:
    """`publish_raw` (what `dxtalent publish` runs) sends a city's facts to a 3-node cluster
    while the node it is connected to, the DX_EVENTS leader and the DX_INBOUND leader are
    killed in turn (SIGKILL) and restarted. One run stores every fact exactly once, the
    services certify exactly what the pure core computes, and DX_EVENTS holds no event id
    twice."""
    topology = Topology(cluster_system.prefix)
    url = str(cluster_system.nats_url)
    assert {name: r for name, (r, _) in asyncio.run(_stream_state(url, topology)).items()} == {
        spec.name: 3 for spec in ALL_STREAMS
    }
    city = generate_city(CATALOG, seed=DEMO_SEED, staff=STAFF)
    messages = [e.to_json_bytes() for e in city.events]
    windows = -(-len(messages) // WINDOW)
    started = time.monotonic()

    kills = KillPlan(nats_cluster, topology, windows)
    report = asyncio.run(
        publish_raw(url, messages, topology, window=WINDOW, progress=kills, ack_timeout_s=2.0)
    )
    published_s = time.monotonic() - started
    kills.wait()
    for node in nats_cluster.nodes:
        if not node.running:
            nats_cluster.restart(node.name)
    cluster_system.wait_ready(timeout=240, settle_checks=3)
    total_s = time.monotonic() - started

    assert report.published == len(messages)
    assert report.duplicates == 0  # a fresh prefix: nothing was there before this run
    state = asyncio.run(_stream_state(url, topology))
    assert state[INBOUND.name][1] == len(messages)  # each fact stored once, retries included
    assert_matches_core(cluster_system, CATALOG, city.events)
    on_events = asyncio.run(events_on(url, topology, "dx.events.>"))
    no_duplicate_ids(on_events)
    recorded = asyncio.run(events_on(url, topology, "dx.events.enrollment.>"))
    assert len(recorded) == len(city.events)
    duplicates = sum(n - 1 for n in Counter(str(e["id"]) for e in on_events).values())
    print(
        f"cluster e2e: {STAFF} staff, {len(messages)} facts, kills {nats_cluster.kills}, "
        f"published in {published_s:.1f}s ({report.retried} sends retried, "
        f"{report.recovered} found stored on retry), caught up {total_s:.1f}s after the "
        f"first fact; DX_EVENTS {len(on_events)} events, {duplicates} duplicate ids; "
        "certifications and progress equal to the core's"
    )


async def _r3_streams(url: str, topology: Topology) -> None:
    """R3 streams; a new cluster's JetStream may answer its first API calls late (a busy
    machine, peers still joining), so a request that times out is asked again (creating an
    existing stream with the same configuration is a no-op)."""
    nc = await connect_nats(url, name="test-cluster-streams")
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            try:
                await ensure_streams(nc.jetstream(timeout=10), topology, replicas=3)
                return
            except TimeoutError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
    finally:
        await nc.close()


def test_the_publish_command_takes_a_cluster_with_a_node_down(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    """`dxtalent publish` with DXT_NATS_URL listing the three nodes, one of them dead: it
    connects to a live one, and every fact is stored once."""
    topology = Topology(unique_token())
    asyncio.run(_r3_streams(nats_cluster.url, topology))
    dead = nats_cluster.nodes[0].name
    nats_cluster.kill(dead)

    def led_by_a_live_node() -> bool:
        try:
            return nats_cluster.stream_leader(topology.stream(INBOUND.name)) != dead
        except LookupError:
            return False

    deadline = time.monotonic() + 30
    while not led_by_a_live_node():  # a leader elected among the two left
        assert time.monotonic() < deadline, "no DX_INBOUND leader among the live nodes"
        time.sleep(0.1)
    facts = tmp_path / "facts.csv"
    rows = [f"E{i},DX-101,2025-06-01" for i in range(1, 201)]
    facts.write_text("employee_id,course_id,completed_on\n" + "\n".join(rows) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")} | {
        "DXT_NATS_URL": nats_cluster.url,
        "DXT_PREFIX": topology.prefix,
        "DXT_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "dxtalent", "publish", str(facts)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == "200 accepted, 0 rejected; sent 200: 200 new, 0 already received"
    )
    state = asyncio.run(_stream_state(nats_cluster.url, topology))
    assert state[INBOUND.name] == (3, 200)


def test_publishing_to_a_cluster_that_does_not_come_back_ends_with_what_was_published(
    nats_cluster: NatsCluster,
) -> None:
    """Every node killed after the first window: publish_raw retries for `retry_for_s`, then
    a UserError says how many facts were published and to publish the file again."""
    topology = Topology(unique_token())
    asyncio.run(_r3_streams(nats_cluster.url, topology))
    city = generate_city(CATALOG, seed=DEMO_SEED, staff=50)
    messages = [e.to_json_bytes() for e in city.events]

    def kill_all_after_the_first_window(_: int) -> None:
        for node in nats_cluster.nodes:
            if node.running:
                nats_cluster.kill(node.name)

    with pytest.raises(UserError) as err:
        asyncio.run(
            publish_raw(
                nats_cluster.url,
                messages,
                topology,
                window=WINDOW,
                progress=kill_all_after_the_first_window,
                retry_for_s=3.0,
                ack_timeout_s=1.0,
            )
        )
    assert str(err.value).startswith(f"NATS at {nats_cluster.url} acknowledged no fact for 3s (")
    assert str(err.value).endswith(
        f"); {WINDOW} of {len(messages)} facts were published; publish the file again once "
        "NATS is back (facts already sent are not recorded twice)"
    )


def test_up_with_more_stream_replicas_than_the_cluster_has_nodes_says_so(
    nats_cluster: NatsCluster, server_urls: ServerUrls, tmp_path: Path
) -> None:
    """`dxtalent up` on the 3-node cluster with DXT_STREAM_REPLICAS=5: the services cannot
    have their streams, and `up` exits 1 with the reason in one line."""
    prefix = unique_token()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")} | {
        "DXT_NATS_URL": nats_cluster.url,
        "DXT_DATABASE_URL": server_urls.database_url,
        "DXT_PREFIX": prefix,
        "DXT_STREAM_REPLICAS": "5",
        "DXT_DATA_DIR": str(tmp_path),
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dxtalent", "up", "--port-base", str(reserved_port_run())],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        asyncio.run(_cleanup(server_urls, Topology(prefix)))
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: service ")
    assert (
        f": stream {prefix.upper()}_DX_INBOUND: DXT_STREAM_REPLICAS=5, but JetStream runs on a "
        "NATS cluster with fewer than 5 JetStream servers up (no suitable peers for placement); "
        "set DXT_STREAM_REPLICAS to at most the number of JetStream servers of the cluster"
    ) in error
