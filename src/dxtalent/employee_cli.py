"""`dxtalent employee export ID`: what the system holds about one employee, as JSON and CSV."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from dxtalent.errors import UserError, load_settings

employee_app = typer.Typer(no_args_is_help=True, help="One employee's personal information.")


async def _collect(database_url: str, employee_id: str, prefix: str) -> dict[str, Any]:
    import asyncpg

    from dxtalent.employee_export import collect

    try:
        conn = await asyncpg.connect(database_url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise UserError(f"cannot connect to DXT_DATABASE_URL: {exc}") from None
    try:
        return await collect(conn, employee_id, prefix)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise UserError(f"the database role may not read the services' tables: {exc}") from None
    finally:
        await conn.close()


@employee_app.command("export")
def export(
    employee_id: Annotated[str, typer.Argument(help="the employee id, e.g. E000123")],
    out: Annotated[Path, typer.Option(help="directory to write ID.json and ID.csv to")] = Path(),
) -> None:
    """Write everything held about one employee (facts, events, levels, credentials) to
    ID.json and ID.csv, for a disclosure request (開示請求). Reads PostgreSQL directly with
    DXT_DATABASE_URL (an operator role that may read every service's schema) and DXT_PREFIX."""
    from dxtalent.employee_export import summary, to_csv

    settings = load_settings()
    if settings.database_url is None:
        raise UserError("DXT_DATABASE_URL is unset: give the operator's PostgreSQL DSN")
    body = asyncio.run(_collect(settings.database_url, employee_id, settings.prefix))
    body["exported_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        out.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = out / f"{employee_id}.json", out / f"{employee_id}.csv"
        json_path.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n", "utf-8")
        csv_path.write_text(to_csv(body), "utf-8")
    except OSError as exc:
        raise UserError(f"{out}: cannot write the export: {exc.strerror}") from None
    absent = f"; absent: {', '.join(body['absent_tables'])}" if body["absent_tables"] else ""
    typer.echo(f"wrote {json_path} and {csv_path}: {summary(body)}{absent}")
