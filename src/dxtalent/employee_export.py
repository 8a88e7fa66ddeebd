"""Everything the system holds about one employee, for a disclosure request (開示請求).

Read straight from PostgreSQL with the operator's `DXT_DATABASE_URL` (a role that may read the
services' schemas; see docs/privacy.md), so it works when a service is down and shows the
stored rows themselves rather than a service's view of them. Each source is a table of one
service's schema; a table that does not exist (a service never started) is listed as absent.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from dxtalent_infra.migrations import quote_ident


@dataclass(frozen=True)
class Source:
    """One table that may hold rows about an employee: the section they belong to, the query."""

    section: str
    service: str
    table: str
    where: str
    order: str


_EVENTS = "subject = $1 OR data->>'employee_id' = $1"
SOURCES: tuple[Source, ...] = (
    Source("facts", "enrollment", "events", _EVENTS, "position"),
    Source("events", "certification", "events", _EVENTS, "position"),
    Source("levels", "certification", "employees", "employee_id = $1", "employee_id"),
    Source("levels", "reporting", "levels", "employee_id = $1", "level"),
    Source("records", "reporting", "employee_records", "employee_id = $1", "effective_date"),
    Source("records", "reporting", "nominations", "employee_id = $1", "fiscal_year"),
    Source("records", "reporting", "departures", "employee_id = $1", "left_on"),
    Source("records", "reporting", "enrollments", "employee_id = $1", "fiscal_year, course_id"),
    Source("records", "reporting", "completions", "employee_id = $1", "completed_on, fact_id"),
    Source("records", "reporting", "skills", "employee_id = $1", "skill"),
    Source("records", "reporting", "improvement_cases", "$1 = ANY(leaders)", "case_id"),
    Source("credentials", "certification", "credentials", "employee_id = $1", "status_index"),
    # as the LMS sent them: the actor may carry a name or an e-mail address (docs/privacy.md)
    Source(
        "statements",
        "enrollment",
        "xapi_statements",
        "statement->'actor'->'account'->>'name' = $1",
        "stored, statement_id",
    ),
)
CSV_COLUMNS = ("section", "source", "row", "field", "value")


def schema_name(prefix: str, service: str) -> str:
    """A service's schema (as `dxtalent_infra.runtime.schema_for` names it)."""
    return f"{prefix}_{service}" if prefix else service


async def collect(
    conn: asyncpg.Connection, employee_id: str, prefix: str, sources: Sequence[Source] = SOURCES
) -> dict[str, Any]:
    """Every source's rows about `employee_id`, by section, with the tables that were absent."""
    sections: dict[str, list[dict[str, Any]]] = {s.section: [] for s in sources}
    absent = []
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        for s in sources:
            table = f"{quote_ident(schema_name(prefix, s.service))}.{quote_ident(s.table)}"
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                absent.append(f"{schema_name(prefix, s.service)}.{s.table}")
                continue
            query = f"SELECT to_jsonb(t) FROM {table} AS t WHERE {s.where} ORDER BY {s.order}"
            for (row,) in await conn.fetch(query, employee_id):
                source = f"{schema_name(prefix, s.service)}.{s.table}"
                sections[s.section].append({"source": source, "row": json.loads(row)})
    return {"employee_id": employee_id, "sections": sections, "absent_tables": absent}


def to_csv(export: dict[str, Any]) -> str:
    """The export as long CSV: one line per field of each row (nested values as JSON)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for section, items in export["sections"].items():
        for n, item in enumerate(items, start=1):
            for field, value in item["row"].items():
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                writer.writerow((section, item["source"], n, field, text))
    return out.getvalue()


def summary(export: dict[str, Any]) -> str:
    """'facts 12, events 3, ...': how many rows each section holds."""
    return ", ".join(f"{k} {len(v)}" for k, v in export["sections"].items())
