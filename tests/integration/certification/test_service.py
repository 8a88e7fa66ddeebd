"""The certification service end to end in one process: enrollment events in on NATS,
certification events out through the event store and outbox, against real servers."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.events import SkillRevoked, SkillRevokedEvent
from tests.integration.certification.harness import (
    L1_COURSES,
    L1_SKILLS,
    Enrollment,
    RunningService,
)
from tests.support.polling import eventually

LEVEL_CERTIFIED = "dxtalent.certification.LevelCertified.v1"
SKILL_ACQUIRED = "dxtalent.certification.SkillAcquired.v1"


def level_one_facts(who: Enrollment, correlation: str = "corr-hr-batch-7") -> list[CloudEvent]:
    """Record, nomination and every level-1 course; the last completion carries `correlation`."""
    events = [who.record(), who.nomination(2025)]
    events += [who.completion(c, f"2025-06-{i + 1:02d}") for i, c in enumerate(L1_COURSES[:-1])]
    events.append(who.completion(L1_COURSES[-1], "2025-07-15", correlation=correlation))
    return events


async def publish_all(service: RunningService, events: list[CloudEvent]) -> None:
    for event in events:
        await service.publish(event)


async def test_a_nominated_employee_with_every_level_one_course_is_certified(
    service: RunningService,
) -> None:
    """LevelCertified on dx.events.certification.level-certified, caused by the completing
    event, with its correlation id, evidence and time; one SkillAcquired per skill."""
    who = Enrollment()
    events = level_one_facts(who)
    await publish_all(service, events)
    await service.caught_up()

    certified = await service.emitted(who.employee_id, "level-certified")
    assert len(certified) == 1
    event, completing = certified[0], events[-1]
    assert event["type"] == LEVEL_CERTIFIED
    assert event["causationid"] == completing.id
    assert event["correlationid"] == "corr-hr-batch-7"
    assert completing.time is not None
    assert dt.datetime.fromisoformat(event["time"]) == completing.time
    data = event["data"]
    assert (data["level"], data["certified_on"], data["fiscal_year"]) == (1, "2025-07-15", 2025)
    assert data["department_code"] == "D-SOUMU"
    assert data["policy_version"] == "hirakata-2025.2"
    fact_ids = {e.data.fact_id for e in events[2:]}
    assert {ev["event_id"] for ev in data["evidence"]} == fact_ids
    acquired = await service.emitted(who.employee_id, "skill-acquired")
    assert len(acquired) == len(L1_SKILLS)
    assert all(e["type"] == SKILL_ACQUIRED for e in acquired)


async def test_a_void_revokes_the_level_and_the_skill(service: RunningService) -> None:
    """Voiding one level-1 completion: SkillRevoked, then LevelRevoked caused by the void."""
    who = Enrollment()
    events = level_one_facts(who)
    await publish_all(service, events)
    void = who.void(events[3], reason="entered for the wrong employee")
    await service.publish(void)
    await service.caught_up()

    revoked = await service.emitted(who.employee_id, "level-revoked")
    assert len(revoked) == 1
    assert revoked[0]["causationid"] == void.id
    assert revoked[0]["data"]["level"] == 1
    assert revoked[0]["data"]["caused_by"] == void.id
    skill_revoked = await service.emitted(who.employee_id, "skill-revoked")
    assert [e["data"]["skill"] for e in skill_revoked] == ["ict-basics"]
    assert "entered for the wrong employee" in skill_revoked[0]["data"]["reason"]
    body = await service.employee(who.employee_id)
    assert body["current_level"] == 0
    assert body["next_level"]["missing"][0]["skill"] == "ict-basics"


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """An HTTP body without the employee id, to compare two employees with equal facts."""
    return {k: v for k, v in body.items() if k != "employee_id"}


async def test_duplicates_and_another_order_give_the_same_state(service: RunningService) -> None:
    """The same facts shuffled and each delivered twice (the copy without Nats-Msg-Id, so
    JetStream cannot drop it) end in the same state as in order, with no duplicate events."""
    first, second = Enrollment(), Enrollment()
    in_order = level_one_facts(first)
    # the second employee's facts, with the same inbound ids (so the evidence compares equal)
    mirrored = [second.record(), second.nomination(2025)]
    mirrored += [
        second.completion(e.data.course_id, e.data.completed_on.isoformat(), fact_id=e.data.fact_id)
        for e in in_order[2:]
    ]
    shuffled = random.Random(7).sample(mirrored, len(mirrored))
    await publish_all(service, in_order)
    for event in shuffled:
        await service.publish(event)
        await service.publish(event, msg_id=False)
    await service.publish(shuffled[0], msg_id=False)
    await service.caught_up()

    assert comparable(await service.employee(second.employee_id)) == comparable(
        await service.employee(first.employee_id)
    )
    stored = await service.stored(second.employee_id)
    ids = [e.event_id for e in stored]
    assert len(ids) == len(set(ids))
    acquired = [e.data["skill"] for e in stored if e.event_type.endswith("SkillAcquired.v1")]
    assert sorted(acquired) == sorted(set(acquired))
    assert len(acquired) == len(L1_SKILLS)
    certified = [e for e in stored if e.event_type == LEVEL_CERTIFIED]
    assert [e.data["level"] for e in certified] == [1]
    assert not await service.dead_letters()


async def test_what_is_not_an_enrollment_event_is_dead_lettered_without_blocking(
    service: RunningService,
) -> None:
    """Bad JSON and a certification event on an enrollment subject go to
    dx.deadletter.certification with a reason; the facts behind them are still applied."""
    who = Enrollment()
    await service.publish_raw("dx.events.enrollment.course-completed", b"{not json", {})
    stray = SkillRevokedEvent(
        specversion="1.0",
        id="stray-1",
        source="urn:test",
        type="dxtalent.certification.SkillRevoked.v1",
        data=SkillRevoked(employee_id=who.employee_id, skill="dx-basics", reason="test"),
    )
    await service.publish_raw("dx.events.enrollment.employee-updated", stray.to_json_bytes(), {})
    await service.publish(who.record())
    await service.caught_up()

    async def two_dead_letters() -> bool:
        return len(await service.dead_letters()) == 2

    await eventually(two_dead_letters, "both messages dead-lettered")
    reasons = [d["data"]["reason"] for d in await service.dead_letters()]
    assert "not valid JSON" in reasons[0]
    assert "not an enrollment event" in reasons[1]
    assert (await service.employee(who.employee_id))["department_code"] == "D-SOUMU"
