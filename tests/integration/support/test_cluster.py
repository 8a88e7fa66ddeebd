"""The test NATS cluster (`tests.support.cluster`) is whole before a test gets it: every node
in the meta group, on ports no other node uses, and a node that cannot bind its port makes
the cluster start again on other ports instead of leaving a two-node cluster behind."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.cluster import NatsCluster


def test_a_started_cluster_has_every_node_in_its_meta_group(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path).start()
    try:
        ports = [p for n in cluster.nodes for p in (n.client_port, n.route_port, n.monitor_port)]
        assert len(set(ports)) == len(ports), ports
        for node in cluster.nodes:
            meta = node.monitor("/jsz")["meta_cluster"]
            assert meta["cluster_size"] == 3, (node.name, meta)
            assert meta["leader"], (node.name, meta)
    finally:
        cluster.stop()


def test_a_node_whose_port_is_taken_makes_the_cluster_start_on_other_ports(
    tmp_path: Path,
) -> None:
    cluster = NatsCluster(tmp_path)
    taken = cluster.nodes[1].client_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            cluster.start()
            assert taken not in [n.client_port for n in cluster.nodes]
            assert all(n.running for n in cluster.nodes)
            assert all(
                n.monitor("/jsz")["meta_cluster"]["cluster_size"] == 3 for n in cluster.nodes
            )
        finally:
            cluster.stop()
