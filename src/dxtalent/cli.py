"""The `dxtalent` command line: one entry point for operators, integrators and the demo."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dxtalent_infra.logs import configure_logging
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import Topology

app = typer.Typer(
    no_args_is_help=True, help="dxtalent: DX-leader certification and target progress."
)
dlq_app = typer.Typer(
    no_args_is_help=True, help="Dead letters: messages that could not be accepted."
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures.")
app.add_typer(dlq_app, name="dlq")
app.add_typer(bench_app, name="bench")
console = Console()
err = Console(stderr=True)

STACK_FILE = "stack.json"
DEFAULT_PORTS = {"enrollment": 8081, "certification": 8082, "reporting": 8083}


class ServiceName(StrEnum):
    enrollment = "enrollment"
    certification = "certification"
    reporting = "reporting"


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


def _stack_info(settings: Settings) -> dict[str, str]:
    """URLs written by a running `dxtalent up` under the data directory, if any."""
    path = settings.data_dir / STACK_FILE
    if path.exists():
        info: dict[str, str] = json.loads(path.read_text())
        return info
    return {}


def _nats_url(settings: Settings) -> str:
    url = settings.nats_url or _stack_info(settings).get("nats_url")
    if url is None:
        raise _fail("no NATS server: set DXT_NATS_URL, or start the system with `dxtalent up`")
    return url


@app.command()
def serve(service: ServiceName) -> None:
    """Run one service against the configured servers (DXT_NATS_URL, DXT_DATABASE_URL)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    if settings.nats_url is None or settings.database_url is None:
        raise _fail(
            "serve needs DXT_NATS_URL and DXT_DATABASE_URL; `dxtalent up` runs embedded servers"
        )
    import importlib

    import uvloop

    from dxtalent_infra.runtime import ServiceSpec, run_service

    spec = importlib.import_module(f"dxtalent_{service.value}.service").SPEC
    assert isinstance(spec, ServiceSpec)
    uvloop.run(run_service(spec, settings))


@app.command()
def up(
    data_dir: Annotated[Path | None, typer.Option(help="where embedded servers keep data")] = None,
    port_base: Annotated[
        int, typer.Option(help="HTTP ports: enrollment, +1 certification, +2 reporting")
    ] = 8081,
) -> None:
    """Run all three services; with no DXT_NATS_URL / DXT_DATABASE_URL, on embedded NATS and
    PostgreSQL whose data survives restarts under the data directory."""
    from dxtalent.stack import LocalStack

    settings = Settings()
    configure_logging(settings.log_level, json=False)
    root = (data_dir or settings.data_dir).resolve()
    stack = LocalStack(root, settings.nats_url, settings.database_url, settings.prefix)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stack.start_servers()
        for offset, name in enumerate(DEFAULT_PORTS):
            stack.start_service(name, port_base + offset)
        info = {"nats_url": str(stack.nats_url), "database_url": str(stack.database_url)}
        info |= {name: svc.base_url for name, svc in stack.services.items()}
        (root / STACK_FILE).write_text(json.dumps(info, indent=2))
        stack.wait_ready(timeout=120, settle_checks=1)
        console.print("[green]dxtalent is up[/green]")
        for key, value in info.items():
            console.print(f"  {key:<14} {value}")
        console.print(f"  logs           {root / 'logs'}\nPress Ctrl-C to stop.")
        while not stopping.wait(1.0):
            for name, svc in stack.services.items():
                if svc.proc.poll() is not None:
                    err.print(f"[yellow]{name} exited ({svc.proc.returncode}); restarting[/yellow]")
                    stack.start_service(name, svc.port)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        stack.stop()
        (root / STACK_FILE).unlink(missing_ok=True)


@app.command()
def publish(
    file: Annotated[
        str, typer.Argument(help="JSON lines of CloudEvents, or a CSV of completions; - for stdin")
    ],
    csv: Annotated[
        bool | None, typer.Option("--csv/--json", help="force the format (default: by extension)")
    ] = None,
    source: Annotated[str, typer.Option(help="CloudEvents source for CSV rows")] = "urn:csv-import",
) -> None:
    """Send inbound facts to NATS and report how many JetStream accepted.

    CSV header: employee_id,course_id,completed_on[,event_id][,source] (UTF-8, BOM allowed)."""
    from dxtalent.csv_import import parse_completions_csv, read_json_lines
    from dxtalent.nats_tools import publish_raw

    settings = Settings()
    text = sys.stdin.read() if file == "-" else Path(file).read_text("utf-8-sig")
    as_csv = csv if csv is not None else file.lower().endswith(".csv")
    if as_csv:
        from dxtalent_contracts.catalog import load_catalog

        imported = parse_completions_csv(
            text, source=source, catalog=load_catalog(settings.catalog)
        )
        for row_error in imported.errors:
            err.print(f"[yellow]skipped row {row_error.row}:[/yellow] {row_error.reason}")
        messages = [e.to_json_bytes() for e in imported.events]
    else:
        messages = read_json_lines(text)
    report = asyncio.run(publish_raw(_nats_url(settings), messages, Topology(settings.prefix)))
    console.print(
        f"published {report.published}: {report.published - report.duplicates} accepted, "
        f"{report.duplicates} duplicates (already received), {report.unrecognised} of unknown type "
        "(they will be dead-lettered; see `dxtalent dlq list`)"
    )


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

    settings = Settings()
    base = (
        url
        or _stack_info(settings).get("reporting")
        or f"http://127.0.0.1:{DEFAULT_PORTS['reporting']}"
    )
    token = settings.api_token.get_secret_value() if settings.api_token else None
    body = fetch_progress(base, fiscal_year, as_of=as_of, department=department, token=token)
    console.print(progress_table([body]))


@dlq_app.command("list")
def dlq_list() -> None:
    """Show the dead letters with their reasons."""
    from rich.table import Table

    from dxtalent.nats_tools import list_dead_letters

    settings = Settings()
    letters = asyncio.run(list_dead_letters(_nats_url(settings), Topology(settings.prefix)))
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

    settings = Settings()
    n = asyncio.run(redrive(_nats_url(settings), seq, Topology(settings.prefix), delete=not keep))
    console.print(f"re-drove {n} dead letters")


@app.command()
def demo(
    staff: Annotated[int, typer.Option(help="how many staff the generated city has")] = 3000,
    seed: Annotated[int, typer.Option(help="seed of the generated city")] = 2025,  # demo.DEMO_*
    keep_data: Annotated[bool, typer.Option(help="keep the demo's data directory")] = False,
) -> None:
    """Run the whole system on embedded servers, feed a generated city, print target progress."""
    from dxtalent.demo import run_demo

    configure_logging("warning", json=False)
    run_demo(console, staff=staff, seed=seed, keep_data=keep_data)


@bench_app.command("latency")
def bench_latency(
    samples: Annotated[int, typer.Option(help="how many certifications to time")] = 200,
) -> None:
    """End-to-end latency from an inbound CourseCompleted to the LevelCertified it causes."""
    from dxtalent.latency import run_latency_bench

    configure_logging("warning", json=False)
    run_latency_bench(console, samples=samples)


@app.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as dist_version

    console.print(dist_version("dxtalent"))
