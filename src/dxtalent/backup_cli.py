"""`dxtalent backup dump DIR` / `dxtalent backup restore DIR`: the event stores of the services
that keep one (enrollment, certification), by `dxtalent_infra.backup` (docs/backup-restore.md).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Annotated, cast

import asyncpg
import typer

from dxtalent.errors import UserError, load_settings
from dxtalent_infra.backup import BackupError, dump_event_stores, restore_event_store
from dxtalent_infra.runtime import ServiceSpec, schema_for
from dxtalent_infra.settings import Settings

backup_app = typer.Typer(
    no_args_is_help=True, help="Back up the event stores, and restore them into an empty database."
)

SERVICES = ("enrollment", "certification", "reporting")


def store_schemas(settings: Settings) -> dict[str, str]:
    """Service -> schema of every service that keeps an event store."""
    specs = [
        cast(ServiceSpec, importlib.import_module(f"dxtalent_{name}.service").SPEC)
        for name in SERVICES
    ]
    return {s.name: schema_for(settings, s.name) for s in specs if s.publishes}


def _database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise UserError("set DXT_DATABASE_URL to the PostgreSQL database of the event stores")
    return settings.database_url


async def dump(settings: Settings, directory: Path) -> str:
    """Dump every event store into `directory`; one line saying what was dumped."""
    conn = await asyncpg.connect(_database_url(settings))
    try:
        stores = await dump_event_stores(conn, store_schemas(settings), directory)
    except BackupError as exc:
        raise UserError(str(exc)) from None
    finally:
        await conn.close()
    listed = ", ".join(f"{s.service} {s.events:,} events" for s in stores)
    return f"dumped {listed} to {directory}"


async def restore(settings: Settings, directory: Path, *, republish: bool) -> str:
    """Restore every event store of the dump in `directory`; one line saying what."""
    conn = await asyncpg.connect(_database_url(settings))
    try:
        counts = {
            service: await restore_event_store(
                conn, service, schema, directory, republish=republish
            )
            for service, schema in store_schemas(settings).items()
        }
    except BackupError as exc:
        raise UserError(str(exc)) from None
    finally:
        await conn.close()
    listed = ", ".join(f"{service} {n:,} events" for service, n in counts.items())
    then = "; the relays will publish them again" if republish else ""
    return f"restored {listed}{then}"


@backup_app.command("dump")
def dump_command(
    directory: Annotated[Path, typer.Argument(help="where the dump goes (created)")],
) -> None:
    """Dump the event stores (one consistent snapshot, CSV by COPY: any server version)."""
    typer.echo(asyncio.run(dump(load_settings(), directory)))


@backup_app.command("restore")
def restore_command(
    directory: Annotated[Path, typer.Argument(help="a directory `backup dump` wrote")],
    republish: Annotated[
        bool,
        typer.Option(help="publish every restored event again (when DX_EVENTS was lost too)"),
    ] = False,
) -> None:
    """Restore the event stores into an empty database; then rebuild the projections
    (`dxtalent rebuild certification` before the certification service starts)."""
    typer.echo(asyncio.run(restore(load_settings(), directory, republish=republish)))
