"""The Kubernetes NATS configuration (`deploy/k8s/nats.yaml`) as three real servers on loopback.

The ConfigMap's `nats.conf` runs as shipped, with only its addresses, ports and file paths
moved to this test's loopback ports and temporary directory. The environment is the one the
StatefulSet gives each pod: POD_NAME, the passwords, and the route URLs that carry the route
user's password. A private CA is made for the test. Decision 0181 is checked:

- the routes form over mutual TLS with the route user;
- a client must use TLS and trust the CA;
- an R3 stream can be created (by `admin`);
- a fourth server holding a certificate of the CA but a wrong route password is refused.
"""

from __future__ import annotations

import json
import shutil
import ssl
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import nats
import pytest
import yaml
from nats.js import api

from dxtalent_infra.servers import EmbeddedNats, free_ports
from tests.support.polling import eventually
from tests.support.tls import loopback_tls

ROOT = Path(__file__).resolve().parents[3]
USERS = ("enrollment", "certification", "reporting", "hr", "ops", "admin", "backup")
ROUTE_PASSWORD = uuid.uuid4().hex  # URL-safe, as the Secret's must be
ADMIN_PASSWORD = uuid.uuid4().hex


def _shipped_conf() -> str:
    docs = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "nats.yaml").read_text())
    (config_map,) = [d for d in docs if d and d["metadata"]["name"] == "nats-config"]
    conf: str = config_map["data"]["nats.conf"]
    return conf


def _write_pki(directory: Path) -> None:
    """ca.crt, and tls.crt / tls.key for 127.0.0.1 signed by it (server and client use), the
    names the shipped config mounts from Secret nats-tls."""
    loopback_tls(directory, ca="ca.crt", cert="tls.crt", key="tls.key")


class Node:
    """One server of the cluster: its ports and the EmbeddedNats running the shipped config."""

    def __init__(
        self, root: Path, name: str, ports: Sequence[int], route_password: str = ROUTE_PASSWORD
    ) -> None:
        """`ports`: client, cluster and monitoring, picked with every other node's at once
        (`free_ports`), so no node gets another's port."""
        self.name, self.route_password = name, route_password
        self.dir = root / name
        self.dir.mkdir()
        self.client, self.cluster, self.http = ports
        self.server: EmbeddedNats | None = None

    def start(self, root: Path, peers: list[Node]) -> Node:
        pki = root / "pki"
        conf = (
            _shipped_conf()
            .replace("0.0.0.0:4222", f"127.0.0.1:{self.client}")
            .replace("0.0.0.0:6222", f"127.0.0.1:{self.cluster}")
            .replace("0.0.0.0:8222", f"127.0.0.1:{self.http}")
            .replace("/etc/nats-tls", str(pki))
            .replace("/data/jetstream", str(self.dir / "jetstream"))
            .replace("/var/run/nats/nats.pid", str(self.dir / "nats.pid"))
        )
        shutil.copy(ROOT / "deploy" / "nats" / "accounts.conf", self.dir / "accounts.conf")
        env = {f"NATS_{u.upper()}_PASSWORD": uuid.uuid4().hex for u in USERS}
        env |= {
            "POD_NAME": self.name,
            "NATS_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "NATS_ROUTE_PASSWORD": self.route_password,
        }
        for n, peer in enumerate(peers):  # what Kubernetes builds from $(NATS_ROUTE_PASSWORD)
            env[f"NATS_ROUTE_{n}"] = f"nats://route:{self.route_password}@127.0.0.1:{peer.cluster}"
        self.server = EmbeddedNats(self.dir, port=self.client, config=conf, env=env).start()
        return self

    def monitor(self, path: str) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=5) as r:
            body: dict[str, object] = json.load(r)
            return body

    def log(self) -> str:
        return (self.dir / "nats-server.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    (tmp_path / "pki").mkdir()
    _write_pki(tmp_path / "pki")
    ports = free_ports(9)
    nodes = [Node(tmp_path, f"nats-{n}", ports[3 * n : 3 * n + 3]) for n in range(3)]
    try:
        for node in nodes:
            node.start(tmp_path, nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _tls(root: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(root / "pki" / "ca.crt"))


async def test_the_shipped_cluster_config_forms_a_tls_cluster_with_route_auth(
    cluster: list[Node], tmp_path: Path
) -> None:
    async def routed() -> bool:
        return all(
            {"nats-0", "nats-1", "nats-2"} - {node.name}
            <= {str(r["remote_name"]) for r in node.monitor("/routez")["routes"]}  # type: ignore[attr-defined]
            for node in cluster
        )

    await eventually(routed, "every node routed to the other two", within=60)
    assert all(node.monitor("/varz")["tls_required"] for node in cluster)

    url = f"nats://127.0.0.1:{cluster[0].client}"
    with pytest.raises(Exception, match=r"(?i)certificate|ssl"):  # no CA: TLS is required
        await nats.connect(url, user="admin", password=ADMIN_PASSWORD, allow_reconnect=False)
    nc = await nats.connect(
        url, user="admin", password=ADMIN_PASSWORD, tls=_tls(tmp_path), inbox_prefix="_INBOX_admin"
    )
    try:
        js = nc.jetstream()

        async def replicated() -> bool:
            await js.add_stream(api.StreamConfig(name="R3", subjects=["r3.>"], num_replicas=3))
            return True

        await eventually(replicated, "an R3 stream created (JetStream meta leader elected)", 60)
        info = await js.stream_info("R3")
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2, info.cluster
    finally:
        await nc.close()

    intruder = Node(tmp_path, "intruder", free_ports(3), route_password="wrong").start(
        tmp_path, cluster
    )
    try:

        async def refused() -> bool:
            return "Authorization Violation" in intruder.log()

        await eventually(refused, "the cluster refused a route with the wrong password", 30)
        names = {str(r["remote_name"]) for r in cluster[0].monitor("/routez")["routes"]}  # type: ignore[attr-defined]
        assert "intruder" not in names
    finally:
        intruder.stop()
