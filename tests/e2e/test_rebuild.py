"""`dxtalent rebuild` while the services serve (guarantee 5, decision 0220).

A generated city runs through the three services; then certification's `employees` and
reporting's read models are rebuilt from `DX_EVENTS` into new schemas and swapped in, while a
background task queries both services without pause. Every answer must be complete and
correct: the progress tables equal the pure core's on the facts published so far, and each
employee's answer is the one served before (or, for the employee whose fact arrives during
the rebuild, the one after it). One fact is published during each rebuild and one after the
swaps; in the end everything equals the pure core, and the rebuilds published nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from dxtalent.citygen import generate_city
from dxtalent.demo import DEMO_SEED
from dxtalent.expected import expected_progress, expected_states
from dxtalent.nats_tools import publish_raw
from dxtalent.rebuild_cli import rebuild_service
from dxtalent.stack import LocalStack
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.fiscal import fiscal_year_end, japan_date
from dxtalent_contracts.inbound import InboundEvent
from dxtalent_infra.logs import configure_logging
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import Topology
from tests.e2e.helpers import assert_matches_core, events_on, no_duplicate_ids
from tests.integration.certification.test_category_counts import scanned

CATALOG = load_catalog()
STAFF = 300
YEARS = sorted(CATALOG.fiscal_years)


def _employee(event: InboundEvent) -> str:
    return str(getattr(event.data, "employee_id", ""))


def facts_certifying_one_level(events: Sequence[InboundEvent], n: int) -> list[InboundEvent]:
    """`n` completions of distinct employees, each of which alone adds exactly one level."""
    by_employee: dict[str, list[InboundEvent]] = {}
    for e in events:
        by_employee.setdefault(_employee(e), []).append(e)
    chosen: list[InboundEvent] = []
    for emp, own in sorted(by_employee.items()):
        states = expected_states(CATALOG, own)
        if emp not in states:
            continue
        full = states[emp].levels
        for fact in reversed(own):
            if "Completed" not in fact.type:
                continue
            without = expected_states(CATALOG, [e for e in own if e is not fact])
            fewer = without[emp].levels if emp in without else {}
            if len(full) == len(fewer) + 1 and all(full.get(k) == v for k, v in fewer.items()):
                chosen.append(fact)
                break
        if len(chosen) == n:
            return chosen
    raise AssertionError(f"the city has fewer than {n} such completions")


def progress_rows(levels: Any) -> list[tuple[int, int, int]]:
    return sorted((int(r["level"]), int(r["reached"]), int(r["exactly"])) for r in levels)


@dataclass
class Querier:
    """Queries both services until stopped; keeps every answer that was wrong."""

    certification: str
    reporting: str
    allowed_progress: list[dict[int, list[tuple[int, int, int]]]]
    employees: dict[str, Any]  # id -> the answer served before the rebuilds
    touched: dict[str, int]  # id -> levels before its late fact (one more after it)
    answered: int = 0
    wrong: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while not self.stop.is_set():
                for fy in YEARS:
                    await self._check_progress(http, fy, fiscal_year_end(fy).isoformat())
                for emp, before in self.employees.items():
                    r = await self._employee(http, emp)
                    if r is not None and r != before:
                        self.wrong.append(f"employee {emp}: {r} != {before}")
                for emp, levels in self.touched.items():
                    r = await self._employee(http, emp)
                    if r is not None and len(r["levels"]) not in (levels, levels + 1):
                        self.wrong.append(f"employee {emp}: {r}")

    async def _employee(self, http: httpx.AsyncClient, emp: str) -> Any:
        r = await http.get(f"{self.certification}/v1/employees/{emp}")
        self.answered += 1
        if r.status_code != 200:
            self.wrong.append(f"employee {emp}: {r.status_code} {r.text[:200]}")
            return None
        return r.json()

    async def _check_progress(self, http: httpx.AsyncClient, fy: int, end: str) -> None:
        r = await http.get(
            f"{self.reporting}/v1/progress", params={"fiscal_year": fy, "as_of": end}
        )
        self.answered += 1
        if r.status_code != 200:
            self.wrong.append(f"progress {fy}: {r.status_code} {r.text[:200]}")
            return
        rows = progress_rows(r.json()["levels"])
        if not any(rows == allowed[fy] for allowed in self.allowed_progress):
            self.wrong.append(f"progress {fy}: {rows}")


def test_rebuilds_while_serving_answer_every_query_and_publish_nothing(
    system: LocalStack,
) -> None:
    configure_logging("warning", json=False)  # the rebuilds run in this process
    city = generate_city(CATALOG, seed=DEMO_SEED, staff=STAFF)
    events = list(city.events)
    late = facts_certifying_one_level(events, 3)
    first = [e for e in events if all(e is not f for f in late)]
    asyncio.run(_publish(system, first))
    system.wait_ready(timeout=180, settle_checks=3)
    asyncio.run(_rebuild_while_serving(system, first, late))
    assert_matches_core(system, CATALOG, events)


async def _publish(system: LocalStack, facts: Sequence[InboundEvent]) -> None:
    topology = Topology(system.prefix)
    await publish_raw(str(system.nats_url), [e.to_json_bytes() for e in facts], topology)


async def _rebuild_while_serving(
    system: LocalStack, first: list[InboundEvent], late: list[InboundEvent]
) -> None:
    certification = system.services["certification"].base_url
    reporting = system.services["reporting"].base_url
    prefixes = [first + late[:k] for k in range(len(late) + 1)]
    allowed = [_at_year_ends(facts) for facts in prefixes]
    touched = {_employee(f) for f in late}
    sample = sorted({_employee(e) for e in first} - touched - {""})[:20]
    async with httpx.AsyncClient(timeout=10) as http:
        before = {
            emp: (await http.get(f"{certification}/v1/employees/{emp}")).json()
            for emp in [*sample, *sorted(touched)]
        }
    querier = Querier(
        certification,
        reporting,
        allowed[:3],  # the third late fact is published after the querying
        {e: before[e] for e in sample},
        {e: len(before[e]["levels"]) for e in touched},
    )
    db = await asyncpg.connect(str(system.database_url))
    store = f'"{system.prefix}_certification".events'
    try:
        last_position = await db.fetchval(f"SELECT coalesce(max(position), 0) FROM {store}")
        oids_before = await _projection_oids(db, system.prefix)
        queries = asyncio.create_task(querier.run())
        for service, fact in (("certification", late[0]), ("reporting", late[1])):
            answered = querier.answered
            await _rebuild_publishing(system, service, fact)
            assert querier.answered > answered, "no query was answered during the rebuild"
            await asyncio.to_thread(system.wait_ready, 120, 3)
        querier.stop.set()
        await queries
        assert not querier.wrong, querier.wrong[:5]
        assert querier.answered > 0

        # both projections were swapped for new tables
        oids_after = await _projection_oids(db, system.prefix)
        assert all(oids_after[k] != oids_before[k] for k in oids_before), (oids_before, oids_after)
        assert (
            await db.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1", f"{system.prefix}_%_re%"
            )
            == 0
        ), "the rebuild and retired schemas are dropped"

        # a fact after the swaps reaches the new tables through the live consumers
        await _publish(system, late[2:])
        await asyncio.to_thread(system.wait_ready, 120, 3)

        # the rebuilds appended nothing: every certification event since is caused by a late fact
        new_rows = await db.fetch(
            f"SELECT data->>'employee_id' AS emp, event_type FROM {store} WHERE position > $1",
            last_position,
        )
        assert {r["emp"] for r in new_rows} <= touched, new_rows
        certified = Counter(
            r["emp"] for r in new_rows if r["event_type"].endswith("LevelCertified.v1")
        )
        assert certified == Counter(touched), certified

        # certification's category counts were swapped with its rows: /v1/categories answers
        # as a scan of the swapped-in employees does
        schema = f"{system.prefix}_certification"
        async with httpx.AsyncClient(timeout=10) as http:
            answer = (await http.get(f"{certification}/v1/categories")).json()
        today = japan_date(dt.datetime.now(dt.UTC))
        assert answer["categories"] == await scanned(db, schema, today)
    finally:
        querier.stop.set()
        with contextlib.suppress(Exception):
            await queries
        await db.close()
    published = await events_on(
        str(system.nats_url), Topology(system.prefix), "dx.events.certification.>"
    )
    no_duplicate_ids(published)


def _at_year_ends(facts: Sequence[InboundEvent]) -> dict[int, list[tuple[int, int, int]]]:
    return {
        fy: sorted((lv.level, lv.reached, lv.exactly) for lv in p.levels)
        for fy in YEARS
        for p in [expected_progress(CATALOG, facts, [fy], as_of=fiscal_year_end(fy))[fy]]
    }


async def _rebuild_publishing(system: LocalStack, service: str, fact: InboundEvent) -> None:
    """Rebuild `service`, publishing `fact` once the rebuild has read its first batch."""
    sent: list[asyncio.Task[None]] = []

    def progress(done: int, total: int) -> None:
        if done and not sent:
            sent.append(asyncio.get_running_loop().create_task(_publish(system, [fact])))

    settings = Settings(
        nats_url=system.nats_url, database_url=system.database_url, prefix=system.prefix
    )
    report = await rebuild_service(
        service,
        settings,
        CATALOG,
        batch_size=100,
        progress=progress,
    )
    assert sent, "the fact was published during the rebuild"
    await sent[0]
    assert report.read > 0
    assert report.applied > 0


async def _projection_oids(db: asyncpg.Connection, prefix: str) -> dict[str, int]:
    return {
        "employees": await db.fetchval(
            "SELECT to_regclass($1)::oid", f'"{prefix}_certification".employees'
        ),
        "reporting": await db.fetchval(
            "SELECT oid FROM pg_namespace WHERE nspname = $1", f"{prefix}_reporting"
        ),
    }
