"""Reading the read model for a report: one aggregate query, then the pure progress functions.

A report reads the placement counts of the read model (`domain.placements`, kept by
`placements.PlacementWriter` in the consumer's transaction): per department, level and
employment, how many employees the report date places there. It adds the yearly sums of the
fiscal years before the report's and the daily changes of its own year up to `as_of`, so its
cost grows with the departments and days, not with the city's headcount. A city-wide or one
department's report has PostgreSQL sum over the departments too (`ReportReader.tally`: a row per
level and employment to decode and read, not one per department). A departments report also
reads the departments that nominated a leader in the year and the departments' names; each
report is one statement, so it sees the tables at one instant while the consumer writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import asyncpg

from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.fiscal import fiscal_year_end, fiscal_year_start, reiwa_label
from dxtalent_infra.migrations import quote_ident
from dxtalent_reporting.domain.placements import Tally, tallies
from dxtalent_reporting.domain.progress import Progress, progress_from_tally


@dataclass(frozen=True)
class ReportData:
    """Everything a departments report of one fiscal year on one date needs, read at one
    instant (a city-wide or one department's report needs only its `Tally`).

    `tallies` maps each department someone is placed in on the date to its employees per
    (highest level, employed)."""

    tallies: Mapping[str, Tally]
    nominated_departments: frozenset[str] = frozenset()
    department_names: Mapping[str, str] = field(default_factory=dict)


def report_date(fiscal_year: int, as_of: dt.date | None, today: dt.date) -> dt.date:
    """The date a report of `fiscal_year` is for: `as_of`; by default `today` while the year
    runs, else the year's last day (a past year's outcome, a coming year's plan).

    A date outside the fiscal year raises `ValueError` naming the year's first and last day.
    """
    first, last = fiscal_year_start(fiscal_year), fiscal_year_end(fiscal_year)
    if as_of is None:
        return today if first <= today <= last else last
    if not first <= as_of <= last:
        raise ValueError(
            f"as_of {as_of} is outside {reiwa_label(fiscal_year)} (FY{fiscal_year}): "
            f"{first} … {last}"
        )
    return as_of


def by_department(
    catalog: Catalog, fiscal_year: int, data: ReportData, as_of: dt.date
) -> dict[str, Progress]:
    """One report per department someone is placed in on `as_of` or that nominated a leader."""
    return {
        d: progress_from_tally(catalog, fiscal_year, as_of, d, data.tallies.get(d, {}))
        for d in sorted(data.tallies.keys() | data.nominated_departments)
    }


class ReportReader:
    """The reads of one report from the read model of `schema`: one statement each, so one
    snapshot and one round trip, inside the caller's transaction or none."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        counts = f"""
            SELECT department, level, employed, sum(n)::int AS n FROM (
              SELECT department, level, employed, n FROM {q}.placement_years
              WHERE fiscal_year < $1
              UNION ALL
              SELECT department, level, employed, n FROM {q}.placement_days
              WHERE day BETWEEN $2 AND $3) changes
            GROUP BY department, level, employed HAVING sum(n) <> 0"""
        # one department's or the city's (`$4` null) rows summed over the departments; the
        # condition on `$4` is decided when the statement is planned for its parameters
        self._tally = f"""
            SELECT level, employed, sum(n)::int AS n FROM (
              SELECT level, employed, n FROM {q}.placement_years
              WHERE fiscal_year < $1 AND ($4::text IS NULL OR department = $4)
              UNION ALL
              SELECT level, employed, n FROM {q}.placement_days
              WHERE day BETWEEN $2 AND $3 AND ($4::text IS NULL OR department = $4)) changes
            GROUP BY level, employed HAVING sum(n) <> 0"""
        # of each department: the name on its record in force on the report date with the
        # latest date (then fact id), else on its latest record; two index look-ups each
        latest = (
            f"SELECT r.department_name FROM {q}.employee_records r"
            " WHERE r.department_code = d.code AND r.department_name IS NOT NULL{}"
            " ORDER BY r.effective_date DESC, r.fact_id DESC LIMIT 1"
        )
        self._departments = f"""
            WITH counts AS ({counts}),
            nominated AS (
              SELECT DISTINCT department_code FROM {q}.nominations WHERE fiscal_year = $1),
            codes AS (
              SELECT department AS code FROM counts
              UNION SELECT department_code FROM nominated)
            SELECT 'count' AS kind, department, level, employed, n, NULL AS name FROM counts
            UNION ALL
            SELECT 'nominated', department_code, NULL, NULL, NULL, NULL FROM nominated
            UNION ALL
            SELECT 'name', d.code, NULL, NULL, NULL,
              coalesce(({latest.format(" AND r.effective_date <= $3")}), ({latest.format("")}))
            FROM codes d"""

    async def tally(
        self, conn: asyncpg.Connection, fiscal_year: int, as_of: dt.date, department: str | None
    ) -> Tally:
        """The employees per (highest level, employed) of `fiscal_year` on `as_of` in
        `department`, or in the whole city for None (a city-wide or one department's report)."""
        rows = await conn.fetch(
            self._tally, fiscal_year, fiscal_year_start(fiscal_year), as_of, department
        )
        return {(r[0], r[1]): r[2] for r in rows}

    async def departments(
        self, conn: asyncpg.Connection, fiscal_year: int, as_of: dt.date
    ) -> ReportData:
        """Tallies plus the departments that nominated a leader and the department names."""
        rows = await conn.fetch(
            self._departments, fiscal_year, fiscal_year_start(fiscal_year), as_of
        )
        return ReportData(
            tallies=MappingProxyType(
                tallies(
                    (r["department"], r["level"], r["employed"], r["n"])
                    for r in rows
                    if r["kind"] == "count"
                )
            ),
            nominated_departments=frozenset(
                r["department"] for r in rows if r["kind"] == "nominated"
            ),
            department_names=MappingProxyType(
                {
                    r["department"]: r["name"]
                    for r in rows
                    if r["kind"] == "name" and r["name"] is not None
                }
            ),
        )
