"""Target progress for people: fetch it from the reporting service and lay it out as a table."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from dxtalent.errors import UserError, token_refused
from dxtalent.stack import http_json

#: The fiscal years the reporting service reports: the 令和 era began in FY2019.
FIRST_FISCAL_YEAR, LAST_FISCAL_YEAR = 2019, 2100


class ReportError(UserError):
    """The reporting service did not answer with a progress table."""


def _refusal(url: str, status: int, body: Any) -> ReportError:
    """What a refusal of the reporting service means for the person who asked."""
    if status == 401:
        return ReportError(token_refused("reporting", url))
    if status == 422 and isinstance(body, dict) and isinstance(body.get("detail"), list):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
            for d in body["detail"]
            if isinstance(d, dict)
        )
        return ReportError(f"the reporting service refused the request: {problems}")
    shown = " ".join(str(body).split())
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return ReportError(
        f"GET {url} answered {status} ({shown}); is --url a dxtalent reporting service?"
    )


def fetch_progress(
    base_url: str,
    fiscal_year: int,
    *,
    as_of: str | None = None,
    department: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """GET /v1/progress from the reporting service; a ReportError says why there is none."""
    if not FIRST_FISCAL_YEAR <= fiscal_year <= LAST_FISCAL_YEAR:
        raise ReportError(
            f"fiscal year {fiscal_year} is out of range: give a year from {FIRST_FISCAL_YEAR} "
            f"(令和元年度) to {LAST_FISCAL_YEAR}, by its starting year, e.g. --fiscal-year 2025"
        )
    params: dict[str, str | int] = {"fiscal_year": fiscal_year}
    if as_of:
        params["as_of"] = as_of
    if department:
        params["department"] = department
    url = f"{base_url}/v1/progress?{urllib.parse.urlencode(params)}"
    try:
        status, body = http_json(url, token=token)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise ReportError(
            f"no reporting service answers at {base_url} ({reason}); start the system with "
            "`dxtalent up`, or pass --url of a running reporting service"
        ) from None
    if status != 200 or not isinstance(body, dict):
        raise _refusal(url, status, body)
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
