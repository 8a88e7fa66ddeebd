"""Target progress for people: fetch it from the reporting service and lay it out as a table."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from dxtalent.stack import http_json


class ReportError(RuntimeError):
    """The reporting service did not answer with a progress table."""


def fetch_progress(
    base_url: str,
    fiscal_year: int,
    *,
    as_of: str | None = None,
    department: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """GET /v1/progress from the reporting service."""
    params: dict[str, str | int] = {"fiscal_year": fiscal_year}
    if as_of:
        params["as_of"] = as_of
    if department:
        params["department"] = department
    url = f"{base_url}/v1/progress?{urllib.parse.urlencode(params)}"
    try:
        status, body = http_json(url, token=token)
    except OSError as exc:
        raise ReportError(f"reporting service at {base_url} did not answer: {exc}") from exc
    if status != 200 or not isinstance(body, dict):
        raise ReportError(f"GET {url} answered {status}: {body}")
    return body


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def progress_table(
    bodies: Sequence[dict[str, Any]], title: str = "ＤＸ推進リーダー 到達目標の進捗"
) -> Table:
    """One row per fiscal year and level: 令和 label, target, reached, exactly, percent."""
    table = Table(title=title)
    for column in ("年度", "基準日", "レベル", "目標", "到達", "うち当該レベル", "達成率"):
        table.add_column(column, justify="right" if column not in ("年度", "基準日") else "left")
    for body in bodies:
        label = f"{body['fiscal_year_label']} (FY{body['fiscal_year']})"
        for i, row in enumerate(sorted(body["levels"], key=lambda r: -int(r["level"]))):
            target = "—" if row["target"] is None else str(row["target"])
            table.add_row(
                label if i == 0 else "",
                str(body["as_of"]) if i == 0 else "",
                f"レベル{row['level']}",
                target,
                str(row["reached"]),
                str(row["exactly"]),
                _percent(row["percent"]),
            )
        table.add_section()
    return table
