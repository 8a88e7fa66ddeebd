"""The demo city sent through the enrollment service's HTTP doors instead of NATS: its HR facts
as CloudEvents batches (`POST /v1/facts`), its completions and voids as xAPI statements from an
LMS. The certifications and progress equal the pure core's on the same facts, as through NATS."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from dxtalent.citygen import generate_city
from dxtalent.demo import DEMO_SEED
from dxtalent.stack import LocalStack
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.inbound import CompletionVoidedEvent, CourseCompletedEvent, InboundEvent
from tests.e2e.conftest import INGEST_TOKEN
from tests.e2e.helpers import assert_matches_core
from tests.support.xapi_statements import course_statement, voiding

CATALOG = load_catalog()
STAFF = 3000  # the demo city, as `make demo` generates it
#: The LMS's statement ids, derived from the city's fact ids so that voids can name them.
LMS = uuid.UUID("5b8a7f0e-1c2d-4e3f-8a9b-0c1d2e3f4a5b")


def _statement_id(fact_id: str) -> str:
    return str(uuid.uuid5(LMS, fact_id))


def _statement(event: InboundEvent) -> dict[str, Any]:
    """The xAPI statement an LMS sends for a completion or a void of the city."""
    if isinstance(event, CompletionVoidedEvent):
        voided = _statement_id(event.data.voided_event_id)
        return voiding(voided, statement_id=_statement_id(event.id))
    assert isinstance(event, CourseCompletedEvent)
    day = event.data.completed_on
    moment = dt.datetime.combine(day, dt.time(12), dt.timezone(dt.timedelta(hours=9)))
    return course_statement(
        event.data.employee_id,
        event.data.course_id,
        timestamp=moment.isoformat(),
        statement_id=_statement_id(event.id),
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def test_the_city_through_http_and_xapi_gives_what_the_core_computes(
    system: LocalStack,
) -> None:
    """HR facts in batches of 500 (one batch sent twice), completions and voids as statements
    in shuffled arrays of 100 (a void often before its statement): every batch 202 / 200 with
    nothing rejected; certifications and progress equal the core's on the city's facts."""
    city = generate_city(CATALOG, seed=DEMO_SEED, staff=STAFF)
    lms_types = (CourseCompletedEvent, CompletionVoidedEvent)
    hr = [json.loads(e.to_json_bytes()) for e in city.events if not isinstance(e, lms_types)]
    statements = [_statement(e) for e in city.events if isinstance(e, lms_types)]
    random.Random(7).shuffle(statements)
    enrollment = system.services["enrollment"].base_url
    auth = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    with httpx.Client(base_url=enrollment, headers=auth, timeout=60) as http:
        batches = [*_chunks(hr, 500), hr[:500]]
        for batch in batches:
            response = http.post(
                "/v1/facts",
                content=json.dumps(batch),
                headers={"Content-Type": "application/cloudevents-batch+json"},
            )
            assert response.status_code == 202, response.text
        for batch in _chunks(statements, 100):
            response = http.post(
                "/xapi/statements", json=list(batch), headers={"X-Experience-API-Version": "1.0.3"}
            )
            assert response.status_code == 200, response.text
    system.wait_ready(timeout=300, settle_checks=3)

    assert_matches_core(system, CATALOG, city.events)
