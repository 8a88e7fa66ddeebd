"""`dxtalent rebuild certification|reporting`: a projection rebuilt from `DX_EVENTS` into a
new schema while the service keeps serving the old one, then swapped (`dxtalent_infra.rebuild`).

Shows a progress bar with the rate in events/s and ends with one summary line.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import cast

import asyncpg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as ProgressBar

from dxtalent.errors import UserError
from dxtalent.nats_tools import NatsAuth, connect
from dxtalent_contracts.catalog import Catalog
from dxtalent_infra.rebuild import Progress, Rebuild, RebuildError, RebuildReport, RebuildSpec
from dxtalent_infra.settings import Settings

REBUILDABLE = ("certification", "reporting")


def rebuild_spec(service: str) -> RebuildSpec:
    """The `REBUILD` of a service's `rebuild` module."""
    spec = importlib.import_module(f"dxtalent_{service}.rebuild").REBUILD
    return cast(RebuildSpec, spec)


async def rebuild_service(
    service: str,
    settings: Settings,
    catalog: Catalog,
    *,
    auth: NatsAuth | None = None,
    keep_retired: bool = False,
    console: Console | None = None,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> RebuildReport:
    """Rebuild `service`'s projection on the servers of `settings` (both URLs set); a bar on
    `console` when given, and `progress` told too."""
    if settings.nats_url is None or settings.database_url is None:
        raise UserError("rebuild needs DXT_NATS_URL and DXT_DATABASE_URL")
    nc = await connect(settings.nats_url, f"dxtalent-rebuild-{service}", auth)
    try:
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=3,
            server_settings={"application_name": f"dxtalent-rebuild-{service}"},
        )
    except (OSError, asyncpg.PostgresError) as exc:
        await nc.close()
        raise UserError(f"cannot connect to PostgreSQL ({exc}); check DXT_DATABASE_URL") from None
    try:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]:>8.0f} events/s"),
            TimeElapsedColumn(),
        )
        with ProgressBar(*columns, console=console, disable=console is None) as bar:
            task = bar.add_task(f"rebuilding {service}", total=None, rate=0.0)
            loop = asyncio.get_running_loop()
            started = loop.time()

            def show(done: int, total: int) -> None:
                rate = done / max(loop.time() - started, 1e-9)
                bar.update(task, completed=done, total=total, rate=rate)
                if progress is not None:
                    progress(done, total)

            rebuild = Rebuild(
                rebuild_spec(service),
                settings,
                catalog,
                pool,
                nc.jetstream(),
                progress=show,
                batch_size=batch_size,
            )
            try:
                return await rebuild.run(keep_retired=keep_retired)
            except RebuildError as exc:
                raise UserError(f"rebuild of {service}: {exc}") from None
    finally:
        await pool.close()
        await nc.close()


def summary(report: RebuildReport) -> str:
    """One line: what was read and applied, how fast, and what was kept."""
    line = (
        f"{report.service}: rebuilt from {report.read:,} events in {report.seconds:.1f}s "
        f"({report.rate:,.0f} events/s; {report.applied:,} applied, {report.skipped:,} left "
        f"out), swapped at stream sequence {report.swapped_at_sequence:,} "
        f"(the live consumer waited {report.locked_seconds:.2f}s)"
    )
    if report.retired:
        line += f"; the old tables are kept in schema {report.retired!r}"
    return line
