"""`dxtalent employee export`: everything held about one employee, read from PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dxtalent.cli import app
from tests.integration.certification.harness import RunningService
from tests.integration.certification.test_credentials import certified, credentials

pytestmark = pytest.mark.integration


async def test_the_export_holds_the_employees_events_levels_and_credentials(
    badges: RunningService, database_url: str, tmp_path: Path
) -> None:
    """After a level-1 certification: the JSON holds the employee's certification events,
    their row (facts and levels) and their credential, nobody else's; the services that never
    ran here are listed absent; the CSV has one line per field of those rows."""
    who, _ = await certified(badges)
    other, _ = await certified(badges)
    env = {"DXT_DATABASE_URL": database_url, "DXT_PREFIX": badges.topology.prefix}

    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["employee", "export", who.employee_id, "--out", str(tmp_path)],
        env=env,
    )

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {tmp_path}/{who.employee_id}.json and ")
    body = json.loads((tmp_path / f"{who.employee_id}.json").read_text("utf-8"))
    sections = body["sections"]
    stored = await badges.stored(who.employee_id)
    assert [e["row"]["event_id"] for e in sections["events"]] == [e.event_id for e in stored]
    [row] = sections["levels"]
    assert row["row"]["state"]["levels"][0]["level"] == 1
    [held] = sections["credentials"]
    [listed] = await credentials(badges, who.employee_id)
    assert held["row"]["token"] == listed["jwt"]
    assert other.employee_id not in json.dumps(body)
    assert f"{badges.topology.prefix}_enrollment.events" in body["absent_tables"]
    lines = list(csv.DictReader((tmp_path / f"{who.employee_id}.csv").open(encoding="utf-8")))
    assert {(r["section"], r["field"]) for r in lines} >= {
        ("credentials", "token"),
        ("events", "data"),
    }


def test_without_a_database_url_the_export_says_what_to_set(tmp_path: Path) -> None:
    """No DXT_DATABASE_URL: one line naming it, exit 1, nothing written."""
    result = CliRunner().invoke(
        app,
        ["employee", "export", "E000123", "--out", str(tmp_path)],
        env={"DXT_DATABASE_URL": ""},
    )
    assert (result.exit_code, result.output) == (
        1,
        "error: DXT_DATABASE_URL is unset: give the operator's PostgreSQL DSN\n",
    )
    assert list(tmp_path.iterdir()) == []
