"""The `dxtalent` command line as an operator and an HR integrator use it, in processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

from dxtalent.stack import http_json
from dxtalent_infra.nats import connect_nats
from dxtalent_infra.servers import free_port, nats_server_binary, port_open
from dxtalent_infra.streams import ensure_streams
from dxtalent_infra.topology import Topology
from tests.e2e.conftest import _cleanup
from tests.support.cli import run_dxtalent
from tests.support.ports import reserved_port_run
from tests.support.servers import ServerUrls, unique_token
from tests.support.tls import loopback_tls

CSV = "\ufeffemployee_id,course_id,completed_on\nE1,DX-101,2025/6/1\nE1,ICT-101,2025-06-02\nE1,NOPE,2025-06-02\n"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_dxtalent(*args, env=env)


def _wait(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_json(url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def _caught_up(env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Until `dxtalent status` exits 0 (every service caught up); its last run."""
    deadline = time.monotonic() + timeout
    while True:
        shown = _cli("status", env=env)
        if shown.returncode == 0 or time.monotonic() > deadline:
            return shown
        time.sleep(0.3)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dxt-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _up(data_dir: Path, base: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dxtalent", "up", "--port-base", str(base)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _down(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


def test_up_runs_everything_embedded_and_keeps_data_across_restarts(data_dir: Path) -> None:
    """`dxtalent up` with no server URLs starts embedded NATS and PostgreSQL and the three
    services; `publish` (CSV) and `progress` find it; after a stop and a second `up` on the
    same data directory the facts are still there; a stop leaves no process behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")} | {
        "DXT_DATA_DIR": str(data_dir)
    }
    base = reserved_port_run()
    certification = f"http://127.0.0.1:{base + 1}"
    up = _up(data_dir, base, env)
    try:
        for port in (base, base + 1, base + 2):  # enrollment declares DX_INBOUND when it starts
            _wait(f"http://127.0.0.1:{port}/readyz")
        csv_file = data_dir / "completions.csv"
        csv_file.write_text(CSV, encoding="utf-8")
        published = _cli("publish", str(csv_file), env=env)
        assert published.returncode == 1, published.stderr  # row 4 names no catalog course
        assert published.stdout.startswith("2 accepted, 1 rejected; sent 2: 2 new")
        assert "rejected row 4: data.course_id: unknown course 'NOPE'" in published.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = http_json(f"{certification}/v1/employees/E1")
            if status == 200 and len(body["skills"]) == 3:
                break
            time.sleep(0.2)
        assert {s["skill"] for s in body["skills"]} == {
            "dx-basics",
            "municipal-dx-basics",
            "ict-basics",
        }
        shown = _cli("progress", "--fiscal-year", "2025", env=env | {"COLUMNS": "200"})
        assert shown.returncode == 0, shown.stderr
        assert "令和7年度" in shown.stdout
    finally:
        _down(up)
    assert not list(data_dir.glob("stack.json"))
    up = _up(data_dir, base, env)
    try:
        _wait(f"{certification}/readyz")
        assert _caught_up(env).returncode == 0  # serving, and done with what the stream holds
        status, body = http_json(f"{certification}/v1/employees/E1")
        assert status == 200
        assert len(body["skills"]) == 3  # DX-101 grants two
    finally:
        _down(up)
    leftovers = subprocess.run(
        ["pgrep", "-f", str(data_dir)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == ""


# --- one `dxtalent up` configured by an operator: token, own catalog, limits, logging ---------

TOKEN = "s3cret-token"
EXTRA_COURSE = "CITY-900"


@dataclass(frozen=True)
class ConfiguredUp:
    """A running `dxtalent up` and the environment an operator's shell has for it."""

    env: dict[str, str]
    certification: str
    reporting: str
    data_dir: Path


def _city_catalog(path: Path) -> Path:
    """The default catalog with one more course, as a city edits it."""
    default = resources.files("dxtalent_contracts.catalogs").joinpath("hirakata-2025.yaml")
    extra = f"  - {{id: {EXTRA_COURSE}, name: 市独自DX講座, grants: [dx-basics], track: L1}}\n"
    path.write_text(
        default.read_text("utf-8").replace("courses:\n", "courses:\n" + extra, 1), "utf-8"
    )
    return path


@pytest.fixture(scope="module")
def configured_up(server_urls: ServerUrls) -> Iterator[ConfiguredUp]:
    """`dxtalent up` on the test servers under a prefix of its own, with DXT_API_TOKEN,
    DXT_CATALOG (an extra course), DXT_MAX_DELIVER and DXT_LOG_LEVEL set as an operator would."""
    data_dir = Path(tempfile.mkdtemp(prefix="dxt-cli-conf-"))
    prefix = unique_token()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")} | {
        "DXT_DATA_DIR": str(data_dir),
        "DXT_NATS_URL": server_urls.nats_url,
        "DXT_DATABASE_URL": server_urls.database_url,
        "DXT_PREFIX": prefix,
        "DXT_API_TOKEN": TOKEN,
        "DXT_CATALOG": str(_city_catalog(data_dir / "city.yaml")),
        "DXT_MAX_DELIVER": "2",
        "DXT_LOG_LEVEL": "warning",
        "DXT_RELAY_POLL_INTERVAL_S": "0.5",
    }
    base = reserved_port_run()
    up = _up(data_dir, base, env)
    try:
        _wait(f"http://127.0.0.1:{base + 1}/readyz")
        _wait(f"http://127.0.0.1:{base + 2}/readyz")
        yield ConfiguredUp(
            env, f"http://127.0.0.1:{base + 1}", f"http://127.0.0.1:{base + 2}", data_dir
        )
    finally:
        _down(up)
        asyncio.run(_cleanup(server_urls, Topology(prefix)))
        shutil.rmtree(data_dir, ignore_errors=True)


def test_up_passes_the_api_token_to_the_services(configured_up: ConfiguredUp) -> None:
    """With DXT_API_TOKEN set for `up`, the query APIs of certification and reporting answer
    401 without the token and 200 with it."""
    employee = f"{configured_up.certification}/v1/employees/E1"
    progress = f"{configured_up.reporting}/v1/progress?fiscal_year=2025"
    assert http_json(employee)[0] == 401
    assert http_json(progress)[0] == 401
    assert http_json(progress, token="wrong")[0] == 401
    assert http_json(progress, token=TOKEN)[0] == 200
    assert http_json(employee, token=TOKEN)[0] in (200, 404)


def test_up_passes_the_catalog_to_the_services(configured_up: ConfiguredUp) -> None:
    """With DXT_CATALOG naming a city's catalog with an extra course, `publish` accepts a
    completion of that course, enrollment records it and certification grants its skill."""
    csv_file = configured_up.data_dir / "extra.csv"
    csv_file.write_text(f"employee_id,course_id,completed_on\nE77,{EXTRA_COURSE},2025-06-01\n")
    published = _cli("publish", str(csv_file), env=configured_up.env)
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("1 accepted, 0 rejected; sent 1: 1 new")
    url = f"{configured_up.certification}/v1/employees/E77"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = http_json(url, token=TOKEN)
        if status == 200 and body["skills"]:
            break
        time.sleep(0.2)
    assert status == 200, body
    assert [(s["skill"], s["course_id"]) for s in body["skills"]] == [("dx-basics", EXTRA_COURSE)]
    letters = _cli("dlq", "list", env=configured_up.env | {"COLUMNS": "200"})
    assert letters.returncode == 0, letters.stderr
    assert "0 dead letters" in letters.stdout


def test_progress_with_a_wrong_token_says_so_in_one_line(configured_up: ConfiguredUp) -> None:
    """`dxtalent progress` with a token the services do not have exits 1 with one line; with
    the right one it prints the table."""
    wrong = _cli(
        "progress", "--fiscal-year", "2025", env=configured_up.env | {"DXT_API_TOKEN": "x"}
    )
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines() == [
        "error: the reporting service refused the token (401 at "
        f"{configured_up.reporting}/v1/progress?fiscal_year=2025); set DXT_API_TOKEN to the "
        "token the services were started with"
    ]
    right = _cli("progress", "--fiscal-year", "2025", env=configured_up.env | {"COLUMNS": "200"})
    assert right.returncode == 0, right.stderr
    assert "令和7年度" in right.stdout


def test_publish_sends_the_accepted_facts_and_exits_1_for_the_rejected(
    configured_up: ConfiguredUp,
) -> None:
    """A CSV with a good row and a row the catalog refuses: the good one is sent, the bad one
    is named with its reason, and the exit status is 1; the same file again sends nothing new."""
    csv_file = configured_up.data_dir / "mixed.csv"
    csv_file.write_text(
        "employee_id,course_id,completed_on\nE78,DX-101,2025-06-01\nE78,NOPE,2025-06-02\n"
    )
    first = _cli("publish", str(csv_file), env=configured_up.env)
    assert first.returncode == 1
    assert first.stdout.strip() == "1 accepted, 1 rejected; sent 1: 1 new, 0 already received"
    rejected, summary = first.stderr.strip().splitlines()
    assert rejected.startswith("rejected row 3: data.course_id: unknown course 'NOPE'")
    assert summary.startswith("error: 1 rejected; fix them and publish the file again")
    again = _cli("publish", str(csv_file), env=configured_up.env)
    assert again.stdout.strip() == "1 accepted, 1 rejected; sent 1: 0 new, 1 already received"


def test_redriving_a_dead_letter_that_is_not_there_says_so(configured_up: ConfiguredUp) -> None:
    """`dlq redrive --seq 999999` with no such dead letter exits 1 naming it; nothing moves."""
    result = _cli("dlq", "redrive", "--seq", "999999", env=configured_up.env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no dead letter with sequence 999999; `dxtalent dlq list` shows the sequences "
        "there are (nothing was re-driven)"
    ]


def test_progress_with_a_date_the_service_refuses_names_the_parameter(
    configured_up: ConfiguredUp,
) -> None:
    """`dxtalent progress --as-of 2025-02-30` exits 1 with the service's reason in one line."""
    result = _cli(
        "progress", "--fiscal-year", "2025", "--as-of", "2025-02-30", env=configured_up.env
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "error: the reporting service refused the request: as_of: as_of must be a calendar date"
    )


def test_publish_to_a_nats_without_the_streams_says_to_start_the_system(
    server_urls: ServerUrls, tmp_path: Path
) -> None:
    """A NATS server without the streams (no DX_INBOUND under the prefix): publish exits 1
    saying so instead of a JetStream traceback."""
    prefix = unique_token()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")} | {
        "DXT_NATS_URL": server_urls.nats_url,
        "DXT_PREFIX": prefix,
        "DXT_DATA_DIR": str(tmp_path),
    }
    csv_file = tmp_path / "facts.csv"
    csv_file.write_text("employee_id,course_id,completed_on\nE1,DX-101,2025-06-01\n")
    result = _cli("publish", str(csv_file), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: NATS at {server_urls.nats_url} has no stream for {prefix}.dx.inbound.>: the "
        "streams are not provisioned (or DXT_PREFIX differs); run `dxtalent provision` as NATS "
        "user admin, or start the system with `dxtalent up`"
    ]


def test_status_prints_one_line_per_service_and_exits_0_when_all_are_caught_up(
    configured_up: ConfiguredUp,
) -> None:
    """`dxtalent status` with the services' token prints a line per service saying it is
    caught up, with its consumers' counts and outbox, and exits 0; with a wrong token it
    exits 1 with one line naming the setting."""
    shown = _caught_up(configured_up.env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["enrollment", "certification", "reporting"]
    assert all(" caught up " in line and "0 pending, 0 unacked" in line for line in lines)
    assert lines[0].endswith("outbox 0")  # enrollment and certification publish
    assert lines[2].endswith("outbox -")  # reporting keeps no outbox
    host, port = configured_up.certification.rsplit(":", 1)
    enrollment = f"{host}:{int(port) - 1}"  # `up` gives enrollment the port before
    wrong = _cli("status", env=configured_up.env | {"DXT_API_TOKEN": "x"})
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines() == [
        "error: the enrollment service refused the token (401 at "
        f"{enrollment}/v1/status); set DXT_API_TOKEN to the token the "
        "services were started with"
    ]


# --- a NATS that asks for credentials --------------------------------------------------------


@dataclass(frozen=True)
class SecuredNats:
    """nats-server with JetStream and TLS (a CA of the test's own) asking for a password:
    `hr` / `right` may do anything, `viewer` / `look` anything but publish facts."""

    url: str
    tls_ca: Path


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[SecuredNats]:
    port = free_port()
    tls = loopback_tls(tmp_path)
    conf = tmp_path / "auth.conf"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        f'tls {{ cert_file: "{tls.cert}", key_file: "{tls.key}" }}\n'
        "authorization { users = [\n"
        "  {user: hr, password: right}\n"
        '  {user: viewer, password: look, permissions: {publish: {deny: ["dx.inbound.>"]}}}\n'
        "] }\n"
    )
    proc = subprocess.Popen(
        [str(nats_server_binary()), "-c", str(conf), "-l", str(tmp_path / "nats.log")],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)
        yield SecuredNats(f"tls://127.0.0.1:{port}", tls.ca)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _secured_env(nats: SecuredNats, tmp_path: Path, **settings: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DXT_")} | {
        "DXT_NATS_URL": nats.url,
        "DXT_NATS_TLS_CA": str(nats.tls_ca),
        "DXT_DATA_DIR": str(tmp_path),
        **settings,
    }


def _facts_csv(tmp_path: Path) -> Path:
    csv_file = tmp_path / "facts.csv"
    csv_file.write_text("employee_id,course_id,completed_on\nE1,DX-101,2025-06-01\n")
    return csv_file


@pytest.mark.parametrize(
    ("credentials", "refused"),
    [
        ({}, "a connection without credentials"),
        (
            {"DXT_NATS_USER": "hr", "DXT_NATS_PASSWORD": "wrong"},
            "user 'hr' with the password in DXT_NATS_PASSWORD",
        ),
    ],
)
def test_every_nats_command_says_in_one_line_when_nats_refuses_its_credentials(
    secured_nats: SecuredNats, tmp_path: Path, credentials: dict[str, str], refused: str
) -> None:
    """publish, dlq list, dlq redrive and up, against a NATS that refuses their credentials:
    each exits 1 at the refusal with one line naming the server, who was refused and the
    settings to fix (before, publish said "no servers available" after retrying)."""
    env = _secured_env(secured_nats, tmp_path, **credentials)
    expected = (
        f"error: NATS at {secured_nats.url} refused {refused} (Authorization Violation); set "
        "DXT_NATS_USER and DXT_NATS_PASSWORD, or DXT_NATS_CREDS, to an account of that "
        "server, as for the services"
    )
    for command in (
        ("publish", str(_facts_csv(tmp_path))),
        ("dlq", "list"),
        ("dlq", "redrive"),
        ("up", "--port-base", str(reserved_port_run())),
    ):
        result = _cli(*command, env=env)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert result.stderr.strip().splitlines() == [expected], command


def test_the_cli_uses_the_nats_user_password_and_tls_ca_of_the_settings(
    secured_nats: SecuredNats, tmp_path: Path
) -> None:
    """With the right DXT_NATS_USER / DXT_NATS_PASSWORD and DXT_NATS_TLS_CA, publish and dlq
    list get through TLS and authorization (and, with no system run there yet, say the stream
    is missing); without the CA, the certificate is not trusted."""
    env = _secured_env(secured_nats, tmp_path, DXT_NATS_USER="hr", DXT_NATS_PASSWORD="right")
    published = _cli("publish", str(_facts_csv(tmp_path)), env=env)
    assert published.returncode == 1
    assert published.stderr.strip().splitlines() == [
        f"error: NATS at {secured_nats.url} has no stream for dx.inbound.>: the streams are not "
        "provisioned (or DXT_PREFIX differs); run `dxtalent provision` as NATS user admin, or "
        "start the system with `dxtalent up`"
    ]
    listed = _cli("dlq", "list", env=env)
    assert listed.returncode == 1
    assert listed.stderr.startswith(
        f"error: NATS at {secured_nats.url} has no stream DX_DEADLETTER"
    )
    untrusted = _cli("dlq", "list", env={k: v for k, v in env.items() if k != "DXT_NATS_TLS_CA"})
    assert untrusted.returncode == 1
    [line] = untrusted.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot connect to NATS at {secured_nats.url} (")
    assert "CERTIFICATE_VERIFY_FAILED" in line
    assert line.endswith(
        "; set DXT_NATS_TLS_CA to the CA certificate (PEM) that signed the server's certificate"
    )


def test_publish_by_a_user_not_allowed_to_publish_facts_says_so_in_one_line(
    secured_nats: SecuredNats, tmp_path: Path
) -> None:
    """A user whose permissions deny dx.inbound.>: publish exits 1 with the server's
    permissions violation and the settings to change, instead of waiting for acks."""

    async def streams() -> None:
        nc = await connect_nats(
            secured_nats.url,
            name="test-admin",
            user="hr",
            password="right",
            tls_ca=secured_nats.tls_ca,
        )
        await ensure_streams(nc.jetstream(), Topology())
        await nc.close()

    asyncio.run(streams())
    env = _secured_env(secured_nats, tmp_path, DXT_NATS_USER="viewer", DXT_NATS_PASSWORD="look")
    result = _cli("publish", str(_facts_csv(tmp_path)), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: NATS at {secured_nats.url} does not let this user publish facts (permissions "
        'violation for publish to "dx.inbound.completion"); set DXT_NATS_USER and '
        "DXT_NATS_PASSWORD, or DXT_NATS_CREDS, to a user that may publish to dx.inbound.>"
    ]


def test_up_refuses_stream_replicas_the_embedded_nats_cannot_have(tmp_path: Path) -> None:
    """DXT_STREAM_REPLICAS=3 with no DXT_NATS_URL: `up` starts nothing and says why."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")} | {
        "DXT_DATA_DIR": str(tmp_path),
        "DXT_STREAM_REPLICAS": "3",
    }
    result = _cli("up", "--port-base", str(reserved_port_run()), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: DXT_STREAM_REPLICAS=3 needs a NATS cluster of at least 3 servers, and the "
        "embedded NATS is one server; set DXT_NATS_URL to the cluster's servers "
        "(comma-separated), or unset DXT_STREAM_REPLICAS"
    ]
    assert not (tmp_path / "nats").exists()
