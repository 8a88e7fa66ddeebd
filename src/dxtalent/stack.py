"""A whole dxtalent system on one machine: embedded servers when none are configured, and the
three services as separate processes. Used by `dxtalent up`, `dxtalent demo` and the e2e tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client.parser import text_string_to_metric_families

from dxtalent.errors import UserError
from dxtalent.nats_tools import NatsAuth, connect
from dxtalent_infra.servers import EmbeddedNats, EmbeddedPostgres, free_port, free_ports

log = structlog.get_logger(__name__)

SERVICES = ("enrollment", "certification", "reporting")
#: What a LocalStack sets for each service itself: the servers, the prefix, the port.
STACK_VARIABLES = frozenset({"DXT_NATS_URL", "DXT_DATABASE_URL", "DXT_PREFIX", "DXT_HTTP_PORT"})


def operator_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The DXT_ settings of an operator's environment that every service of a stack gets
    (token, catalog, limits, logging, NATS credentials, ...): all but STACK_VARIABLES."""
    return {k: v for k, v in environ.items() if k.startswith("DXT_") and k not in STACK_VARIABLES}


@dataclass
class ServiceProcess:
    """One service running as a child process."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def http_json(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    """GET a JSON document; returns (status, body) and never raises for HTTP errors."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, _json_or_text(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json_or_text(exc.read())


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        return body.decode(errors="replace")


def caught_up(base_url: str, token: str | None = None) -> bool:
    """The service at `base_url` answers `GET /v1/status` with `caught_up`: every consumer
    has applied what its stream holds and the outbox is empty. False while it is not up."""
    try:
        status, body = http_json(base_url + "/v1/status", token=token, timeout=2)
    except OSError:  # not listening yet
        return False
    return status == 200 and isinstance(body, dict) and body.get("caught_up") is True


class ServiceExitedError(RuntimeError):
    """A service process (or the provisioning step) ended while the stack was starting; names
    the last thing it logged."""

    def __init__(self, name: str, code: int, log_path: Path) -> None:
        self.name, self.code, self.log_path = name, code, log_path
        super().__init__(
            f"service {name} exited with {code}: {last_line(log_path).removeprefix('error: ')}; "
            f"see {log_path}"
        )


def last_line(path: Path) -> str:
    """The last non-blank line of a log file, or a note that there is none."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return lines[-1].strip() if lines else "(nothing logged)"


@dataclass
class LocalStack:
    """Servers (embedded unless URLs are given) plus service processes under `data_dir`."""

    data_dir: Path
    nats_url: str | None = None
    database_url: str | None = None
    prefix: str = ""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    _servers: list[EmbeddedNats | EmbeddedPostgres] = field(default_factory=list)
    _provisioned: bool = False

    def start_servers(self) -> None:
        """Start embedded NATS/PostgreSQL for whichever URL is not configured."""
        if self.nats_url is None:
            nats = EmbeddedNats(self.data_dir / "nats").start()
            self._servers.append(nats)
            self.nats_url = nats.url
        if self.database_url is None:
            pg = EmbeddedPostgres(self.data_dir / "postgres").start()
            self._servers.append(pg)
            self.database_url = pg.url

    def server_pids(self) -> dict[str, int]:
        """The process ids of the embedded servers running ("nats", "postgres"); servers
        given by URL are not ours and are left out."""
        pids = {}
        for server in self._servers:
            name = "nats" if isinstance(server, EmbeddedNats) else "postgres"
            if (pid := server.pid) is not None:
                pids[name] = pid
        return pids

    def process_roots(self) -> dict[str, int]:
        """The process ids of the services and of the embedded servers, by name: the roots
        whose process trees `processes.cpu_seconds` adds up."""
        return {name: svc.proc.pid for name, svc in self.services.items()} | self.server_pids()

    def provision(self) -> None:
        """`dxtalent provision` with the services' environment (the operator's credential and
        DXT_STREAM_REPLICAS): the streams exist before any service starts (the services may
        not create them, decision 0180). `start_service` runs it once, before the first."""
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / "provision.log"
        with log_path.open("ab") as out:
            code = subprocess.run(
                [sys.executable, "-m", "dxtalent", "provision"],
                env=self.env_for(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
            ).returncode
        if code != 0:
            raise ServiceExitedError("provision", code, log_path)
        self._provisioned = True

    def env_for(self, port: int | None = None) -> dict[str, str]:
        """A service's environment: no DXT_ variable of this process's own (tests stay
        hermetic), then `extra_env` (for `dxtalent up`, the operator's settings), then the
        stack's servers, prefix and port."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")}
        env.update(self.extra_env)
        env["DXT_NATS_URL"] = str(self.nats_url)
        env["DXT_DATABASE_URL"] = str(self.database_url)
        env["DXT_PREFIX"] = self.prefix
        if port is not None:
            env["DXT_HTTP_PORT"] = str(port)
        return env

    def start_service(self, name: str, port: int | None = None) -> ServiceProcess:
        """Start (or restart) one service as `dxtalent serve NAME` in a child process; the
        streams are provisioned before the first."""
        if not self._provisioned:
            self.provision()
        port = port or free_port()
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dxtalent", "serve", name],
                env=self.env_for(port),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.services[name] = ServiceProcess(name, port, proc, log_path)
        return self.services[name]

    def start_services(self, names: tuple[str, ...] = SERVICES) -> None:
        """Start `names`, each on its own free port (picked together, so none repeats)."""
        for name, port in zip(names, free_ports(len(names)), strict=True):
            self.start_service(name, port)

    def kill_service(self, name: str, sig: int = signal.SIGKILL) -> None:
        svc = self.services[name]
        svc.proc.send_signal(sig)
        svc.proc.wait(timeout=30)

    def ready(self) -> dict[str, bool]:
        """Per service: running, serving, and caught up (`GET /v1/status`)."""
        token = self.extra_env.get("DXT_API_TOKEN") or None
        out = {}
        for name, svc in self.services.items():
            if svc.proc.poll() is not None:
                out[name] = False
                continue
            out[name] = caught_up(svc.base_url, token)
        return out

    def batch_totals(self) -> dict[str, tuple[float, float]]:
        """Per consumer: (batches, messages) applied so far, from each running service's
        `/metrics`. Take it before and after a run: the difference says how large the run's
        batches were (`messages_per_batch`)."""
        token = self.extra_env.get("DXT_API_TOKEN") or None
        out: dict[str, tuple[float, float]] = {}
        for svc in self.services.values():
            req = urllib.request.Request(svc.base_url + "/metrics")
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            with urllib.request.urlopen(req, timeout=5) as resp:
                out.update(batch_totals_in(resp.read().decode()))
        return out

    def wait_ready(self, timeout: float = 120.0, settle_checks: int = 3) -> None:
        """Wait until every service is connected and caught up, several checks in a row
        (events move from one service to the next, so one green check is not enough)."""
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline:
            for name, svc in self.services.items():
                if svc.proc.poll() is not None:
                    raise ServiceExitedError(name, svc.proc.returncode, svc.log_path)
            streak = streak + 1 if all(self.ready().values()) else 0
            if streak >= settle_checks:
                return
            time.sleep(0.3)
        raise TimeoutError(f"services not caught up within {timeout}s: {self.ready()}")

    def stop_services(self) -> None:
        for svc in self.services.values():
            if svc.proc.poll() is None:
                svc.proc.send_signal(signal.SIGTERM)
        for svc in self.services.values():
            try:
                svc.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                svc.proc.kill()
                svc.proc.wait()

    def stop(self) -> None:
        self.stop_services()
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()


def batch_totals_in(metrics: str) -> dict[str, tuple[float, float]]:
    """Per consumer: (batches, messages) in a Prometheus text exposition, from the
    `dxtalent_consumer_batch_size` histogram's count and sum."""
    out: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name != "dxtalent_consumer_batch_size":
            continue
        for sample in family.samples:
            count, total = out.get(sample.labels["consumer"], (0.0, 0.0))
            if sample.name.endswith("_count"):
                out[sample.labels["consumer"]] = (sample.value, total)
            elif sample.name.endswith("_sum"):
                out[sample.labels["consumer"]] = (count, sample.value)
    return out


def messages_per_batch(
    before: Mapping[str, tuple[float, float]], after: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Per consumer, the mean messages per batch between two `LocalStack.batch_totals()`."""
    out = {}
    for consumer, (count, total) in after.items():
        count0, total0 = before.get(consumer, (0.0, 0.0))
        if count > count0:
            out[consumer] = (total - total0) / (count - count0)
    return out


@contextlib.contextmanager
def running_stack(stack: LocalStack, services: tuple[str, ...] = SERVICES) -> Iterator[LocalStack]:
    """Servers and services up for the block; everything stopped after, whatever happens,
    SIGTERM included (`sigterm_interrupts`)."""
    with sigterm_interrupts():
        try:
            stack.start_servers()
            stack.start_services(services)
            yield stack
        finally:
            stack.stop()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """For the block, SIGTERM raises KeyboardInterrupt as Ctrl-C does, so that the `finally`
    blocks stopping what this process started still run: by default SIGTERM ends the process
    at once and leaves its services and servers running (`timeout`, a CI job's end, `kill`).
    Only where Python can take the signal (the main thread) and only while SIGTERM has its
    default action: a caller that handles it (`dxtalent up`) keeps its own handler."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _without_password(dsn: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def _check_postgres(dsn: str) -> None:
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError) as exc:
        raise UserError(
            f"cannot connect to PostgreSQL at {_without_password(dsn)} ({exc}); start it, fix "
            "DXT_DATABASE_URL, or unset it for an embedded server"
        ) from None
    await conn.close()


async def check_servers(nats_url: str | None, database_url: str | None, auth: NatsAuth) -> None:
    """The configured servers answer (a UserError saying which does not); unset = embedded."""
    if nats_url is not None:
        hint = "start it, fix DXT_NATS_URL, or unset it for an embedded server"
        await (await connect(nats_url, "dxtalent-up-check", auth, hint)).close()
    if database_url is not None:
        await _check_postgres(database_url)
