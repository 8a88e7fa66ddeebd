"""The three services end to end, as separate processes, through NATS and HTTP only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
from importlib import resources
from pathlib import Path

import nats

from dxtalent.citygen import City, generate_city
from dxtalent.demo import DEMO_SEED, DEMO_STAFF
from dxtalent.nats_tools import list_dead_letters, publish_raw, redrive, subject_for
from dxtalent.stack import LocalStack, http_json
from dxtalent_certification.service import SPEC as CERTIFICATION_SPEC
from dxtalent_contracts.catalog import load_catalog
from dxtalent_infra.topology import EVENTS, Topology
from tests.e2e.helpers import (
    assert_matches_core,
    events_on,
    handled,
    no_duplicate_ids,
    publish_with_ids,
)

CATALOG = load_catalog()
STAFF = 500


def _city(seed: int) -> City:
    return generate_city(CATALOG, seed=seed, staff=STAFF)


def _topology(stack: LocalStack) -> Topology:
    return Topology(stack.prefix)


def test_shuffled_and_duplicated_city_gives_exactly_what_the_core_computes(
    system: LocalStack,
) -> None:
    """The whole demo scenario in random order, with a fifth of the facts sent twice under fresh
    Nats-Msg-Ids (so JetStream cannot drop them): certifications and progress tables equal the
    pure core's on the same facts, and no certification event is published twice."""
    city = generate_city(CATALOG, seed=DEMO_SEED, staff=DEMO_STAFF)
    rng = random.Random(11)
    items = []
    for event in city.events:
        raw = event.to_json_bytes()
        subject, _ = subject_for(raw)
        items.append((subject, raw, event.id))
        if rng.random() < 0.2:
            items.append((subject, raw, f"resent-{event.id}"))
    rng.shuffle(items)
    asyncio.run(publish_with_ids(str(system.nats_url), _topology(system), items))
    system.wait_ready(timeout=300, settle_checks=3)

    assert_matches_core(system, CATALOG, city.events)
    certified = asyncio.run(
        events_on(str(system.nats_url), _topology(system), "dx.events.certification.>")
    )
    no_duplicate_ids(certified)
    recorded = asyncio.run(
        events_on(str(system.nats_url), _topology(system), "dx.events.enrollment.>")
    )
    no_duplicate_ids(recorded)
    assert len(recorded) == len(city.events)


def _valid(employee: str, event_id: str, course: str = "DX-101") -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:test:lms",
        "type": "dxtalent.lms.CourseCompleted.v1",
        "subject": employee,
        "time": "2025-06-12T09:30:00+09:00",
        "data": {"employee_id": employee, "course_id": course, "completed_on": "2025-06-12"},
    }


def test_bad_messages_are_dead_lettered_with_a_reason_and_the_rest_processed(
    system: LocalStack,
) -> None:
    """Malformed JSON, a missing field, an unknown course, an impossible date, an unknown type
    and a completion outside its course's offering period each land in the dead-letter stream
    naming the problem; valid messages around them are recorded."""
    missing = _valid("E900001", "bad-missing")
    del missing["data"]["course_id"]  # type: ignore[attr-defined]
    unknown_course = _valid("E900001", "bad-course", course="NOPE-999")
    bad_date = _valid("E900001", "bad-date")
    bad_date["data"]["completed_on"] = "2025-02-30"  # type: ignore[index]
    unknown_type = _valid("E900001", "bad-type") | {"type": "dxtalent.lms.CourseTeleported.v1"}
    out_of_period = _valid("E900001", "bad-period", course="R6-DX")  # 2025-06-12: FY2025
    messages = [
        json.dumps(_valid("E900001", "ok-1")).encode(),
        b'{"specversion": "1.0", "id": ',
        json.dumps(missing).encode(),
        json.dumps(_valid("E900001", "ok-2", course="ICT-101")).encode(),
        json.dumps(unknown_course).encode(),
        json.dumps(bad_date).encode(),
        json.dumps(unknown_type).encode(),
        json.dumps(out_of_period).encode(),
        json.dumps(_valid("E900001", "ok-3", course="SEC-101")).encode(),
    ]
    asyncio.run(publish_raw(str(system.nats_url), messages, _topology(system)))
    system.wait_ready(timeout=60, settle_checks=3)

    letters = asyncio.run(list_dead_letters(str(system.nats_url), _topology(system)))
    reasons = sorted(d.data.reason for d in letters)
    assert len(letters) == 6, reasons
    expectations = [
        "not valid JSON",
        "data.course_id: Field required",
        "unknown course 'NOPE-999'",
        "data.completed_on",
        "Unknown event type 'dxtalent.lms.CourseTeleported.v1'",
        "course 'R6-DX' ran only in FY2024 (令和6年度), 2024-04-01 to 2025-03-31",
    ]
    for expected in expectations:
        assert any(expected in r for r in reasons), (expected, reasons)
    assert all(d.data.original_base64 for d in letters)
    status, body = http_json(f"{system.services['certification'].base_url}/v1/employees/E900001")
    assert status == 200, body
    assert {s["skill"] for s in body["skills"]} == {
        "dx-basics",
        "municipal-dx-basics",
        "ict-basics",
        "security-basic",
    }


async def _consumer_progress(stack: LocalStack, durable: str) -> tuple[int, int]:
    """(acknowledged, left) of a durable consumer on DX_EVENTS, from the stream's consumer
    info: messages acknowledged without a gap, and those not yet delivered or not yet acked."""
    topology = _topology(stack)
    nc = await nats.connect(str(stack.nats_url))
    try:
        info = await nc.jetstream().consumer_info(topology.stream(EVENTS.name), durable)
    finally:
        await nc.drain()
    left = (info.num_pending or 0) + (info.num_ack_pending or 0)
    return info.ack_floor.consumer_seq if info.ack_floor else 0, left


def test_certification_killed_mid_run_loses_and_duplicates_nothing(system: LocalStack) -> None:
    """SIGKILL the certification service while it works through a city (work done and work
    left, both checked at the kill), start it again: the final certifications and progress
    equal the core's, and no event id is published twice."""
    city = _city(seed=23)
    messages = [e.to_json_bytes() for e in city.events]
    certification = system.services["certification"]
    # certification is away while the city is published and enrollment records it, so its
    # consumer starts with the whole city as a backlog and the kill below lands mid-run
    # however fast it works (it once kept up with enrollment and had nothing left when hit)
    system.kill_service("certification", signal.SIGTERM)
    asyncio.run(publish_raw(str(system.nats_url), messages, _topology(system)))
    recorded = time.monotonic() + 120
    while not system.ready()["enrollment"] and time.monotonic() < recorded:
        time.sleep(0.1)
    system.start_service("certification", certification.port)
    durable = CERTIFICATION_SPEC.consumers[0].durable
    deadline = time.monotonic() + 120
    # kill it once it is well into the work, not before it started nor after it finished
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # its HTTP port opens a moment after the start
            if handled(system, "certification") >= len(messages) // 5:
                break
        time.sleep(0.05)
    system.kill_service("certification", signal.SIGKILL)
    # the consumer is frozen while its only process is dead: this is what the kill interrupted
    acknowledged, left = asyncio.run(_consumer_progress(system, durable))
    assert acknowledged > 0, "killed before the certification consumer had acknowledged anything"
    assert left > 0, f"killed after the work was done ({acknowledged} acknowledged, none left)"
    system.start_service("certification", certification.port)
    system.wait_ready(timeout=300, settle_checks=3)

    assert_matches_core(system, CATALOG, city.events)
    events = asyncio.run(
        events_on(str(system.nats_url), _topology(system), "dx.events.certification.>")
    )
    no_duplicate_ids(events)


def test_dead_letters_are_redriven_once_the_catalog_knows_the_course(
    system: LocalStack, tmp_path: Path
) -> None:
    """A completion of a course the catalog lacks is dead-lettered; after the city adds the
    course to its catalog and the services restart, `dlq redrive` sends it through again and
    the skill is held; the dead letter is gone."""
    new_course = "DX-150"
    asyncio.run(
        publish_raw(
            str(system.nats_url),
            [json.dumps(_valid("E900002", "late-course", course=new_course)).encode()],
            _topology(system),
        )
    )
    system.wait_ready(timeout=60, settle_checks=3)
    letters = asyncio.run(list_dead_letters(str(system.nats_url), _topology(system)))
    assert [new_course in d.data.reason for d in letters] == [True]

    catalog = tmp_path / "catalog.yaml"
    default = resources.files("dxtalent_contracts.catalogs").joinpath("hirakata-2025.yaml")
    catalog.write_text(
        default.read_text("utf-8").replace(
            "courses:\n",
            f"courses:\n  - {{id: {new_course}, name: DX基礎（追加日程）, grants: [dx-basics], track: L1}}\n",
            1,
        ),
        encoding="utf-8",
    )
    system.extra_env = {**system.extra_env, "DXT_CATALOG": str(catalog)}
    for name in ("enrollment", "certification"):
        port = system.services[name].port
        system.kill_service(name, signal.SIGTERM)
        system.start_service(name, port)
    system.wait_ready(timeout=60, settle_checks=1)

    assert asyncio.run(redrive(str(system.nats_url), None, _topology(system))) == 1
    system.wait_ready(timeout=60, settle_checks=3)
    status, body = http_json(f"{system.services['certification'].base_url}/v1/employees/E900002")
    assert status == 200, body
    assert [(s["skill"], s["course_id"]) for s in body["skills"]] == [("dx-basics", new_course)]
    assert asyncio.run(list_dead_letters(str(system.nats_url), _topology(system))) == []
