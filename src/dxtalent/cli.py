"""The `dxtalent` command line: one entry point for operators, integrators and the demo."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from dxtalent.backup_cli import backup_app
from dxtalent.credential_cli import credential_app
from dxtalent.employee_cli import employee_app
from dxtalent.errors import UserError, UserErrorGroup, load_catalog_for, load_settings, read_input
from dxtalent_infra.logs import configure_logging
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import Topology

if TYPE_CHECKING:
    from dxtalent.nats_tools import NatsAuth
    from dxtalent.stack import LocalStack

app = typer.Typer(
    cls=UserErrorGroup,
    no_args_is_help=True,
    help="dxtalent: DX-leader certification and target progress.",
)
dlq_app = typer.Typer(
    no_args_is_help=True, help="Dead letters: messages that could not be accepted."
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures.")
app.add_typer(dlq_app, name="dlq")
app.add_typer(bench_app, name="bench")
app.add_typer(credential_app, name="credential")
app.add_typer(employee_app, name="employee")
app.add_typer(backup_app, name="backup")
console = Console()

STACK_FILE = "stack.json"
DEFAULT_PORTS = {"enrollment": 8081, "certification": 8082, "reporting": 8083}


class ServiceName(StrEnum):
    enrollment = "enrollment"
    certification = "certification"
    reporting = "reporting"


def _stack_info(settings: Settings) -> dict[str, str]:
    """URLs written by a running `dxtalent up` under the data directory, if any."""
    path = settings.data_dir / STACK_FILE
    try:
        info: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{path} cannot be read ({exc}); delete it, `dxtalent up` writes it again"
        ) from None
    return info


def _nats_url(settings: Settings) -> str:
    url = settings.nats_url or _stack_info(settings).get("nats_url")
    if url is None:
        raise UserError("no NATS server: set DXT_NATS_URL, or start the system with `dxtalent up`")
    return url


def _nats_auth(settings: Settings) -> NatsAuth:
    from dxtalent.nats_tools import NatsAuth

    return NatsAuth.from_settings(settings)


@app.command()
def serve(service: ServiceName) -> None:
    """Run one service against the configured servers (DXT_NATS_URL, DXT_DATABASE_URL)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    if settings.nats_url is None or settings.database_url is None:
        raise UserError(
            "serve needs DXT_NATS_URL and DXT_DATABASE_URL; `dxtalent up` runs embedded servers"
        )
    load_catalog_for(settings)  # a bad catalog is one line here, not a service's traceback
    port = settings.http_port or DEFAULT_PORTS[service.value]
    _require_free_ports([port], "set DXT_HTTP_PORT to a free port")
    import importlib

    import uvloop

    from dxtalent_infra.runtime import ServiceSpec, run_service
    from dxtalent_infra.streams import ReplicasError

    spec = importlib.import_module(f"dxtalent_{service.value}.service").SPEC
    assert isinstance(spec, ServiceSpec)
    try:
        uvloop.run(run_service(spec, settings))
    except ReplicasError as exc:  # DXT_STREAM_REPLICAS the NATS cannot hold: one line
        raise UserError(str(exc)) from None


def _require_free_ports(ports: list[int], what_to_do: str) -> None:
    from dxtalent_infra.servers import port_open

    busy = [str(p) for p in ports if port_open(p)]
    if busy:
        raise UserError(f"port {', '.join(busy)} already in use (another dxtalent?); {what_to_do}")


def _up_checks(
    settings: Settings, data_dir: Path | None, port_base: int
) -> tuple[Path, dict[str, int]]:
    """What `up` can find wrong before it starts anything: catalog, ports, data directory and
    the configured servers. Returns the data directory and each service's port."""
    from dxtalent.stack import check_servers

    load_catalog_for(settings)
    if settings.nats_url is None and settings.stream_replicas > 1:
        raise UserError(
            f"DXT_STREAM_REPLICAS={settings.stream_replicas} needs a NATS cluster of at least "
            f"{settings.stream_replicas} servers, and the embedded NATS is one server; set "
            "DXT_NATS_URL to the cluster's servers (comma-separated), or unset DXT_STREAM_REPLICAS"
        )
    ports = {name: port_base + offset for offset, name in enumerate(DEFAULT_PORTS)}
    _require_free_ports(list(ports.values()), "stop it, or pass another --port-base")
    root = (data_dir or settings.data_dir).resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot use {root} as the data directory ({exc.strerror}); pass --data-dir "
            "of a directory you can write, or set DXT_DATA_DIR"
        ) from None
    asyncio.run(check_servers(settings.nats_url, settings.database_url, _nats_auth(settings)))
    return root, ports


def _start(stack: LocalStack, ports: dict[str, int]) -> dict[str, str]:
    """Servers and services up and ready; their URLs, also written to the stack file."""
    from dxtalent.stack import ServiceExitedError

    stack.start_servers()
    try:
        for name, port in ports.items():
            stack.start_service(name, port)  # the first provisions the streams
    except ServiceExitedError as exc:
        raise UserError(str(exc)) from None
    info = {"nats_url": str(stack.nats_url), "database_url": str(stack.database_url)}
    info |= {name: svc.base_url for name, svc in stack.services.items()}
    (stack.data_dir / STACK_FILE).write_text(json.dumps(info, indent=2))
    try:
        stack.wait_ready(timeout=120, settle_checks=1)
    except ServiceExitedError as exc:
        raise UserError(str(exc)) from None
    except TimeoutError as exc:
        raise UserError(f"{exc}; see the logs in {stack.data_dir / 'logs'}") from None
    return info


@app.command()
def up(
    data_dir: Annotated[Path | None, typer.Option(help="where embedded servers keep data")] = None,
    port_base: Annotated[
        int, typer.Option(help="HTTP ports: enrollment, +1 certification, +2 reporting")
    ] = 8081,
) -> None:
    """Run all three services; with no DXT_NATS_URL / DXT_DATABASE_URL, on embedded NATS and
    PostgreSQL whose data survives restarts under the data directory. Every other DXT_ setting
    (token, catalog, limits, logging) reaches every service."""
    from dxtalent.stack import LocalStack, operator_env

    settings = load_settings()
    configure_logging(settings.log_level, json=False)
    root, ports = _up_checks(settings, data_dir, port_base)
    stack = LocalStack(
        root, settings.nats_url, settings.database_url, settings.prefix, operator_env(os.environ)
    )
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        info = _start(stack, ports)
        console.print("[green]dxtalent is up[/green]")
        for key, value in info.items():
            console.print(f"  {key:<14} {value}")
        console.print(f"  logs           {root / 'logs'}\nPress Ctrl-C to stop.")
        _supervise(stack, stopping)
    except KeyboardInterrupt:
        pass
    finally:
        typer.echo("stopping…", err=True)
        stack.stop()
        (root / STACK_FILE).unlink(missing_ok=True)


def _supervise(stack: LocalStack, stopping: threading.Event) -> None:
    """Restart any service that exits, until asked to stop."""
    while not stopping.wait(1.0):
        for name, svc in stack.services.items():
            if svc.proc.poll() is not None:
                typer.echo(f"{name} exited ({svc.proc.returncode}); restarting", err=True)
                stack.start_service(name, svc.port)


@app.command()
def provision() -> None:
    """Create or update the JetStream streams DX_INBOUND, DX_EVENTS and DX_DEADLETTER
    (DXT_STREAM_REPLICAS replicas, DXT_DUPLICATE_WINDOW_S): once per deployment and after
    changing those settings, with the admin NATS credential; the services cannot."""
    from dxtalent.nats_tools import provision as provision_streams

    settings = load_settings()
    lines = asyncio.run(
        provision_streams(
            _nats_url(settings),
            Topology(settings.prefix),
            replicas=settings.stream_replicas,
            duplicate_window_s=settings.duplicate_window_s,
            auth=_nats_auth(settings),
        )
    )
    for line in lines:
        typer.echo(line)


@app.command()
def publish(
    file: Annotated[
        str, typer.Argument(help="JSON lines of CloudEvents, or a CSV of completions; - for stdin")
    ],
    csv: Annotated[
        bool | None, typer.Option("--csv/--json", help="force the format (default: by extension)")
    ] = None,
    source: Annotated[str, typer.Option(help="CloudEvents source for CSV rows")] = "urn:csv-import",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check every fact, send nothing (no server needed)")
    ] = False,
) -> None:
    """Check every fact as enrollment will (contracts and catalog), then send the accepted
    ones to NATS. Prints each rejected fact with its reason; exits 1 when any was rejected.

    CSV header: employee_id,course_id,completed_on[,event_id][,source] (UTF-8, BOM allowed)."""
    from dxtalent.checked import check_facts

    settings = load_settings()
    text = read_input(file)
    as_csv = csv if csv is not None else file.lower().endswith(".csv")
    checked = check_facts(load_catalog_for(settings), text, as_csv=as_csv, source=source)
    if not checked.accepted and not checked.rejected:
        raise UserError(f"{file}: no facts in it (blank); nothing to publish")
    for rejected in checked.rejected:
        typer.echo(f"rejected {rejected.where}: {rejected.reason}", err=True)
    summary = f"{len(checked.accepted)} accepted, {len(checked.rejected)} rejected"
    if dry_run:
        typer.echo(f"{summary}; dry run: nothing sent")
    elif checked.accepted:
        typer.echo(f"{summary}; {_send(settings, checked.accepted)}")
    else:
        typer.echo(f"{summary}; nothing sent")
    if checked.rejected:
        typer.echo(
            f"error: {len(checked.rejected)} rejected; fix them and publish the file again "
            "(facts already sent are not recorded twice)",
            err=True,
        )
        raise typer.Exit(code=1)


def _send(settings: Settings, facts: list[bytes]) -> str:
    """Publish checked facts behind a progress bar (on stderr); says how many JetStream took
    as new and as already received, and how many were sent again after a lost ack."""
    from dxtalent.nats_tools import publish_with_progress

    topology = Topology(settings.prefix)
    report = publish_with_progress(
        Console(stderr=True), _nats_url(settings), facts, topology, _nats_auth(settings)
    )
    new = report.published - report.duplicates
    said = f"sent {report.published}: {new} new, {report.duplicates} already received"
    if report.retried:
        said += f" ({report.retried} sent again after a NATS server was lost)"
    return said


@app.command()
def progress(
    fiscal_year: Annotated[int, typer.Option("--fiscal-year", help="e.g. 2025 for 令和7年度")],
    as_of: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD; default: the fiscal year's end")
    ] = None,
    department: Annotated[str | None, typer.Option(help="a department code")] = None,
    url: Annotated[str | None, typer.Option(help="reporting service base URL")] = None,
) -> None:
    """Print the target-progress table of a fiscal year."""
    from dxtalent.report import fetch_progress, progress_table

    settings = load_settings()
    base = (
        url
        or _stack_info(settings).get("reporting")
        or f"http://127.0.0.1:{DEFAULT_PORTS['reporting']}"
    )
    token = settings.api_token.get_secret_value() if settings.api_token else None
    body = fetch_progress(base, fiscal_year, as_of=as_of, department=department, token=token)
    console.print(progress_table([body]))


@app.command()
def status() -> None:
    """One line per service: caught up or behind, with each consumer's pending messages and
    the outbox backlog; exits 0 when every service is caught up, 1 otherwise."""
    from dxtalent.status_cli import all_statuses

    settings = load_settings()
    info = _stack_info(settings)
    urls = {n: info.get(n) or f"http://127.0.0.1:{p}" for n, p in DEFAULT_PORTS.items()}
    token = settings.api_token.get_secret_value() if settings.api_token else None
    lines, caught_up = all_statuses(urls, token)
    for line in lines:
        typer.echo(line)
    if not caught_up:
        raise typer.Exit(code=1)


@dlq_app.command("list")
def dlq_list() -> None:
    """Show the dead letters with their reasons."""
    from rich.table import Table

    from dxtalent.nats_tools import list_dead_letters

    settings = load_settings()
    letters = asyncio.run(
        list_dead_letters(_nats_url(settings), Topology(settings.prefix), _nats_auth(settings))
    )
    table = Table("seq", "received", "subject", "reason", title=f"{len(letters)} dead letters")
    for d in letters:
        table.add_row(
            str(d.sequence),
            d.data.received_at.isoformat(timespec="seconds"),
            d.data.subject,
            d.data.reason,
        )
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    seq: Annotated[
        list[int] | None, typer.Option(help="only these sequences (default: all)")
    ] = None,
    keep: Annotated[bool, typer.Option(help="keep the dead letters after re-driving")] = False,
) -> None:
    """Send dead letters through again after the cause was fixed (catalog, publisher)."""
    from dxtalent.nats_tools import redrive

    settings = load_settings()
    topology = Topology(settings.prefix)
    n = asyncio.run(
        redrive(_nats_url(settings), seq, topology, delete=not keep, auth=_nats_auth(settings))
    )
    console.print(f"re-drove {n} dead letters")


class Rebuildable(StrEnum):
    certification = "certification"
    reporting = "reporting"


@app.command()
def rebuild(
    service: Rebuildable,
    keep_retired: Annotated[
        bool, typer.Option(help="keep the old tables in schema <schema>_retired after the swap")
    ] = False,
) -> None:
    """Rebuild a projection from DX_EVENTS into a new schema while the service keeps serving,
    then swap it in atomically (certification's employees, reporting's read models)."""
    from dxtalent.rebuild_cli import rebuild_service, summary

    settings = load_settings()
    configure_logging("warning", json=False)
    database_url = settings.database_url or _stack_info(settings).get("database_url")
    if database_url is None:
        raise UserError(
            "no PostgreSQL server: set DXT_DATABASE_URL, or start the system with `dxtalent up`"
        )
    servers = {"nats_url": _nats_url(settings), "database_url": database_url}
    report = asyncio.run(
        rebuild_service(
            service.value,
            settings.model_copy(update=servers),
            load_catalog_for(settings),
            auth=_nats_auth(settings),
            keep_retired=keep_retired,
            console=console,
        )
    )
    console.print(summary(report))


@app.command()
def demo(
    staff: Annotated[int, typer.Option(min=1, help="how many staff the generated city has")] = 3000,
    seed: Annotated[int, typer.Option(help="seed of the generated city")] = 2025,  # demo.DEMO_*
    keep_data: Annotated[bool, typer.Option(help="keep the demo's data directory")] = False,
    serve: Annotated[
        bool, typer.Option(help="keep the system and its dashboard up until Ctrl-C")
    ] = False,
) -> None:
    """Run the whole system on embedded servers, feed a generated city, print target progress."""
    from dxtalent.demo import run_demo

    configure_logging("warning", json=False)
    run_demo(console, staff=staff, seed=seed, keep_data=keep_data, serve=serve)


@bench_app.command("latency")
def bench_latency(
    samples: Annotated[int, typer.Option(min=1, help="how many certifications to time")] = 200,
    rate: Annotated[
        int | None, typer.Option(min=1, help="facts/s of sustained load (default: one at a time)")
    ] = None,
    duration: Annotated[float, typer.Option(min=1, help="seconds of load with --rate")] = 20.0,
    runs: Annotated[int, typer.Option(min=1, help="runs, each on fresh servers")] = 1,
) -> None:
    """End-to-end latency from an inbound CourseCompleted to the LevelCertified it causes."""
    from dxtalent.latency import run_latency_bench

    configure_logging("warning", json=False)
    run_latency_bench(console, samples=samples, rate=rate, duration=duration, runs=runs)


@bench_app.command("throughput")
def bench_throughput(
    staff: Annotated[
        int, typer.Option(min=10, help="city size (facts: about 2.1 per staff)")
    ] = 30_000,
    runs: Annotated[int, typer.Option(min=1, help="runs, each on fresh servers")] = 1,
) -> None:
    """Facts/s end to end for a generated city, and a bare stage on the same servers."""
    from dxtalent.bench_throughput import run_throughput_bench

    configure_logging("warning", json=False)
    run_throughput_bench(console, staff=staff, runs=runs)


@bench_app.command("queries")
def bench_queries(
    sizes: Annotated[
        list[int] | None, typer.Option("--staff", help="city sizes to load (repeatable)")
    ] = None,
    clients: Annotated[int, typer.Option(min=1, help="concurrent connections")] = 4,
    seconds: Annotated[float, typer.Option(min=0.1, help="length of one run")] = 5.0,
    runs: Annotated[int, typer.Option(min=1, help="runs per query")] = 3,
) -> None:
    """Requests/s and p50/p99 of the report queries for the demo city and a 30,000-staff city."""
    from dxtalent.bench_queries import run_queries_bench
    from dxtalent.demo import DEMO_STAFF

    configure_logging("warning", json=False)
    run_queries_bench(console, sizes or [DEMO_STAFF, 30_000], clients, seconds, runs)


@bench_app.command("dashboard")
def bench_dashboard(
    sizes: Annotated[
        list[int] | None, typer.Option("--staff", help="city sizes to time (repeatable)")
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="requests per page")] = 50,
) -> None:
    """Median and p99 of every dashboard page for the demo city and a 30,000-staff city."""
    from dxtalent.bench_dashboard import run_dashboard_bench
    from dxtalent.demo import DEMO_STAFF

    configure_logging("warning", json=False)
    run_dashboard_bench(console, sizes or [DEMO_STAFF, 30_000], rounds)


@bench_app.command("rebuild")
def bench_rebuild(
    sizes: Annotated[
        list[int] | None, typer.Option("--staff", help="city sizes (repeatable)")
    ] = None,
) -> None:
    """Rebuild rates (events/s) of both projections for the demo city and ten times its size."""
    from dxtalent.bench_rebuild import run_rebuild_bench
    from dxtalent.demo import DEMO_STAFF

    configure_logging("warning", json=False)
    run_rebuild_bench(console, sizes or [DEMO_STAFF, 10 * DEMO_STAFF])


@app.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as dist_version

    console.print(dist_version("dxtalent"))
