"""NATS and PostgreSQL in containers (testcontainers), on host networking and loopback ports.

Containers share the host's network namespace and listen on 127.0.0.1 at free ports, so no test
traffic leaves loopback (a bridge would hand out 10.x addresses). Images come from
`DXT_TEST_NATS_IMAGE` / `DXT_TEST_POSTGRES_IMAGE`; the defaults are the official images, and
`deploy/images/build-local-test-images.sh` builds stand-ins from Debian packages where no
registry is reachable. Ryuk (testcontainers' reaper, itself an image from Docker Hub) is off
unless `TESTCONTAINERS_RYUK_DISABLED` says otherwise: the session removes its containers itself.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dxtalent_infra.servers import free_port, port_open, postgres_bin_dir

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

NATS_IMAGE = "nats:2.12-alpine"
POSTGRES_IMAGE = "postgres:17"
ENGINE_TIMEOUT_S = 2.0
_DEFAULT_READY_S = 60.0


class ContainerStartError(RuntimeError):
    """A container did not start or did not become ready; the message names image and cause."""


@dataclass(frozen=True)
class ContainerSpec:
    """One server to run: what it is, its image, command, environment and readiness check."""

    what: str
    image: str
    command: list[str]
    env: dict[str, str]
    port: int
    url: str
    ready: Callable[[], bool]


def engine_unavailable() -> str | None:
    """None when a Docker-API engine answers within ENGINE_TIMEOUT_S, else why it does not."""
    host = os.environ.get("DOCKER_HOST")
    if host is None and not os.path.exists("/var/run/docker.sock"):
        return "DOCKER_HOST is unset and /var/run/docker.sock does not exist"
    try:
        import docker

        docker.from_env(timeout=ENGINE_TIMEOUT_S).ping()
    except Exception as exc:
        return f"no Docker-API engine answered at {host or 'unix:///var/run/docker.sock'}: {exc}"
    return None


def nats_spec() -> ContainerSpec:
    """nats-server with JetStream on 127.0.0.1 at a free port (flags go to the entrypoint)."""
    port = free_port()
    return ContainerSpec(
        what="NATS",
        image=os.environ.get("DXT_TEST_NATS_IMAGE") or NATS_IMAGE,
        command=["-a", "127.0.0.1", "-p", str(port), "-js", "-sd", "/tmp/jetstream"],
        env={},
        port=port,
        url=f"nats://127.0.0.1:{port}",
        ready=lambda: port_open(port),
    )


def postgres_spec() -> ContainerSpec:
    """PostgreSQL listening on 127.0.0.1 at a free port, trust auth, database `test`."""
    port = free_port()
    env = {"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test", "PGPORT": str(port)}
    return ContainerSpec(
        what="PostgreSQL",
        image=os.environ.get("DXT_TEST_POSTGRES_IMAGE") or POSTGRES_IMAGE,
        command=["postgres", "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
        env=env,
        port=port,
        url=f"postgresql://postgres@127.0.0.1:{port}/test",
        ready=lambda: _postgres_accepts(port),
    )


def _postgres_accepts(port: int) -> bool:
    """True once the server accepts connections (not merely listens: it may be starting up)."""
    probe = [str(postgres_bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.run(probe, check=False, timeout=10, stdin=subprocess.DEVNULL).returncode == 0


def start(stack: contextlib.ExitStack, spec: ContainerSpec) -> str:
    """Run `spec` on host networking until it is ready; the stack removes it. Returns its URL."""
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer

    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        testcontainers_config.ryuk_disabled = True
    try:
        container = DockerContainer(
            spec.image,
            command=spec.command,  # type: ignore[arg-type]  # a list goes through to docker-py
            env=spec.env,
            name=f"dxt-test-{spec.what.lower()}-{spec.port}",
        ).with_kwargs(network="host")
        stack.enter_context(container)
        _wait_ready(container, spec)
    except ContainerStartError:
        raise
    except Exception as exc:
        raise ContainerStartError(
            f"{spec.what} container from image {spec.image!r}: {exc}"
        ) from exc
    return spec.url


def _wait_ready(container: DockerContainer, spec: ContainerSpec) -> None:
    timeout = float(os.environ.get("DXT_TEST_CONTAINER_TIMEOUT", _DEFAULT_READY_S))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if spec.ready():
            return
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            raise ContainerStartError(_failure(spec, f"exited ({wrapped.status})", container))
        time.sleep(0.2)
    raise ContainerStartError(_failure(spec, f"not ready within {timeout:.0f}s", container))


def _failure(spec: ContainerSpec, why: str, container: DockerContainer) -> str:
    logs = b""
    with contextlib.suppress(Exception):
        stdout, stderr = container.get_logs()
        logs = (stdout + stderr)[-600:]
    tail = logs.decode(errors="replace").strip().replace("\n", " | ")
    return f"{spec.what} container from image {spec.image!r} on 127.0.0.1:{spec.port} {why}; log: {tail}"
