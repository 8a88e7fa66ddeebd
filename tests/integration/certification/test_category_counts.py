"""`GET /v1/categories` reads the membership counts and answers as the full scan of every
employee did (the former implementation, kept here as the reference).

A staff of employees with records naming categories (several per employee, some effective
only later, two on one day, an unknown code), departures, completions (some dated later, one
voided) is published shuffled and partly twice without a message id, so the service sees
redeliveries. The counts answer today as the scan does, and on the days around every date
something comes into force and around the next fiscal year's start. Migration 3's fill from
the rows gives the same count rows as the handler wrote them, and fills a schema whose rows
predate it.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, cast

import asyncpg

from dxtalent_certification.domain.categories import category_statuses, staff_member
from dxtalent_certification.domain.corrections import SentLedger
from dxtalent_certification.domain.facts import Departure, EmployeeFacts, EmployeeRecord, Fact
from dxtalent_certification.domain.state import CertificationState, HeldSkill
from dxtalent_certification.memberships import FILL_FROM_ROWS, MIGRATION, row_changes
from dxtalent_certification.projection import (
    COMPONENT,
    MIGRATIONS,
    EmployeeRow,
    PostgresEmployeeProjection,
)
from dxtalent_certification.views import CategoriesView, category_view, counted_category_view
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.fiscal import fiscal_year_of, fiscal_year_start, japan_date, yearly
from dxtalent_contracts.memberships import category_counts, category_queries
from dxtalent_infra.membership_counts import MembershipCounts
from dxtalent_infra.migrations import migrate, quote_ident
from tests.integration.certification.harness import Enrollment, RunningService

CATALOG = load_catalog()
STAFF_COURSES = ("MGT-DX", "ALL-DX", "ALL-SEC", "MGT-DATA", "DX-101")
CODES = [c.code for c in CATALOG.categories if not c.implicit] + ["astronaut"]
SKILLS = sorted({s for c in CATALOG.categories for s in CATALOG.category_requirements(c.code)})


async def scanned(conn: asyncpg.Connection, schema: str, day: dt.date) -> list[dict[str, Any]]:
    """The former `get_categories`: every employee's row, each judged on `day`."""
    staff = []
    async with conn.transaction(readonly=True):
        async for row in PostgresEmployeeProjection(schema).all(conn):
            staff.append(staff_member(row.facts, row.state, day))
    return [category_view(s).model_dump(mode="json") for s in category_statuses(CATALOG, staff)]


async def counted(conn: asyncpg.Connection, schema: str, day: dt.date) -> list[dict[str, Any]]:
    """What `get_categories` answers from the counts, on any `day`."""
    queries = category_queries(CATALOG)
    found = category_counts(await MembershipCounts(schema).on(conn, day), queries)
    return [
        counted_category_view(CATALOG, q.code, found[q.code]).model_dump(mode="json")
        for q in queries
    ]


def staff_events(today: dt.date, rng: random.Random) -> tuple[list[CloudEvent], set[dt.date]]:
    """Events about a varied staff, and the days on which something comes into force."""
    days = [today + dt.timedelta(days=n) for n in (-400, -30, -1, 0, 1, 30)]
    days.append(fiscal_year_start(fiscal_year_of(today) + 1))
    events: list[CloudEvent] = []
    for i in range(24):
        who = Enrollment(employee_id=f"E{i:04d}")
        for _ in range(rng.randint(0 if i % 6 == 0 else 1, 3)):
            named = tuple(rng.sample(CODES, rng.randint(0, 2)))
            events.append(who.record(effective=str(rng.choice(days)), categories=named))
        if i % 7 == 3:  # two records on one day: the greater fact id is in force
            events.append(who.record(effective=str(days[0]), categories=("section-chief",)))
        completions = [
            who.completion(course, str(rng.choice(days)))
            for course in rng.sample(STAFF_COURSES, rng.randint(0, 4))
        ]
        events.extend(completions)
        if completions and i % 5 == 2:
            events.append(who.void(completions[0]))
        if i % 4 == 1:
            events.append(who.left(str(rng.choice(days[1:]))))
    return events, set(days)


async def test_categories_from_counts_equal_the_scan_on_every_day(
    service: RunningService,
) -> None:
    today = japan_date(dt.datetime.now(dt.UTC))
    rng = random.Random(13)
    events, days = staff_events(today, rng)
    rng.shuffle(events)
    for event in events:
        await service.publish(event)
        if rng.random() < 0.3:  # a redelivery the service must not count twice
            await service.publish(event, msg_id=False)
    await service.caught_up()

    async with service.pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        reference = await scanned(conn, service.schema, today)
        response = await service.http.get("/v1/categories")
        assert response.status_code == 200
        assert response.json() == CategoriesView.model_validate(
            {
                "as_of": today,
                "policy_version": CATALOG.policy_version,
                "categories": reference,
            }
        ).model_dump(mode="json")
        assert any(c["members"] for c in reference)

        checked = {d + dt.timedelta(days=k) for d in days for k in (-1, 0)}
        for day in sorted(checked):
            assert await counted(conn, service.schema, day) == await scanned(
                conn, service.schema, day
            ), day

        # migration 3's fill from the rows: the count rows the handler wrote
        q = quote_ident(service.schema)
        tables = {
            "membership_days": "day",
            "membership_years": "fiscal_year",
        }
        written = {
            t: {
                tuple(r)
                for r in await conn.fetch(
                    f"SELECT {k}, categories, skills, n FROM {q}.{t} WHERE n <> 0"
                )
            }
            for t, k in tables.items()
        }
        async with conn.transaction():
            for t in tables:
                await conn.execute(f"DELETE FROM {q}.{t}")
            await conn.execute(FILL_FROM_ROWS.replace("{schema}", q))
            for t, k in tables.items():
                filled = await conn.fetch(f"SELECT {k}, categories, skills, n FROM {q}.{t}")
                assert {tuple(r) for r in filled} == written[t], t
                assert len(filled) == len(written[t])


async def test_migration_3_fills_the_counts_of_an_existing_schema(
    database_url: str, db_schema: str
) -> None:
    """Rows written before the counts existed (every kind of record, departure and skill)
    get the counts the handler would have added, when migration 3 runs on them."""
    rng = random.Random(7)
    day = dt.date(2025, 4, 1)
    rows = []
    for i in range(40):
        e = f"E{i:04d}"
        facts: list[Fact] = [
            EmployeeRecord(
                f"r-{rng.randint(0, 3)}-{n}",
                e,
                "D-A",
                frozenset(rng.sample(CODES, rng.randint(0, 3))),
                frozenset(),
                day + dt.timedelta(days=rng.choice([-400, 0, 0, 1, 365])),
            )
            for n in range(rng.randint(0, 3))
        ]
        if i % 3 == 0:
            facts.append(Departure(f"d-{i}", e, day + dt.timedelta(days=rng.randint(-30, 400))))
        skills = {
            s: HeldSkill(s, "C-1", day + dt.timedelta(days=rng.randint(-400, 400)), f"ev-{s}")
            for s in rng.sample(SKILLS, rng.randint(0, 4))
        }
        rows.append(
            EmployeeRow(
                EmployeeFacts.of(e, facts), CertificationState(e, skills, {}), SentLedger.empty()
            )
        )
    expected = {
        (d, " ".join(c), " ".join(s), n)
        for (d, c, s), n in row_changes((None, r) for r in rows).items()
        if n
    }
    async with (
        asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool,
        pool.acquire() as proxy,
    ):
        conn = cast(asyncpg.Connection, proxy)
        await migrate(conn, db_schema, COMPONENT, MIGRATIONS)
        await PostgresEmployeeProjection(db_schema).save_many(conn, [(r, False) for r in rows])
        await migrate(conn, db_schema, COMPONENT, (*MIGRATIONS, MIGRATION))
        q = quote_ident(db_schema)
        days = await conn.fetch(f"SELECT day, categories, skills, n FROM {q}.membership_days")
        years = await conn.fetch(
            f"SELECT fiscal_year, categories, skills, n FROM {q}.membership_years"
        )
    assert {tuple(r) for r in days} == expected
    assert len(days) == len(expected)
    joined = {(d, c, s): n for d, c, s, n in expected}
    assert {tuple(r) for r in years} == {(*k, n) for k, n in yearly(joined).items()}
