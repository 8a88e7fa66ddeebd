"""Corrections through the running certification service, against real NATS and PostgreSQL:
a re-sent LevelCertified / SkillAcquired names the event it supersedes, and nothing already
sent is sent again."""

from __future__ import annotations

from typing import Any

from tests.integration.certification.harness import L1_COURSES, Enrollment, RunningService
from tests.integration.certification.test_service import level_one_facts, publish_all


def by_skill(events: list[dict[str, Any]], skill: str) -> list[dict[str, Any]]:
    return [e for e in events if e["data"]["skill"] == skill]


async def test_a_late_earlier_completion_redates_the_level_as_a_correction(
    service: RunningService,
) -> None:
    """Level 1 certified on July 15; a late June 5 completion of the last course re-dates it
    to June 7 (the latest other course): the second LevelCertified (and the skill's second
    SkillAcquired) supersedes the first."""
    who = Enrollment()
    await publish_all(service, level_one_facts(who))
    await service.caught_up()
    late = who.completion(L1_COURSES[-1], "2025-06-05")
    await service.publish(late)
    await service.caught_up()

    first, redated = await service.emitted(who.employee_id, "level-certified")
    assert (first["data"]["certified_on"], redated["data"]["certified_on"]) == (
        "2025-07-15",
        "2025-06-07",
    )
    assert first["data"]["supersedes"] is None
    assert redated["data"]["supersedes"] == first["id"]
    assert redated["causationid"] == late.id
    acquired = await service.emitted(who.employee_id, "skill-acquired")
    skill_first, skill_again = by_skill(acquired, "leadership")
    assert (skill_first["data"]["supersedes"], skill_again["data"]["supersedes"]) == (
        None,
        skill_first["id"],
    )
    assert all(e["data"]["supersedes"] is None for e in acquired if e is not skill_again)


async def test_a_duplicate_fact_and_a_fact_that_changes_nothing_send_nothing(
    service: RunningService,
) -> None:
    """After level 1: the last completion delivered again (JetStream cannot drop it), and a
    later completion of a course already held, add no certification event."""
    who = Enrollment()
    facts = level_one_facts(who)
    await publish_all(service, facts)
    await service.caught_up()
    before = await service.stored(who.employee_id)

    await service.publish(facts[-1], msg_id=False)
    await service.publish(who.completion(L1_COURSES[0], "2025-09-01"))
    await service.caught_up()

    assert [e.event_id for e in await service.stored(who.employee_id)] == [
        e.event_id for e in before
    ]
    assert not await service.dead_letters()


async def test_a_level_certified_again_after_its_revocation_is_new(
    service: RunningService,
) -> None:
    """A void revokes level 1; completing the course again certifies it with supersedes None,
    and its SkillAcquired is new too."""
    who = Enrollment()
    facts = level_one_facts(who)
    await publish_all(service, facts)
    await service.publish(who.void(facts[3]))
    await service.publish(who.completion(facts[3].data.course_id, "2025-08-01"))
    await service.caught_up()

    certified = await service.emitted(who.employee_id, "level-certified")
    assert [e["data"]["certified_on"] for e in certified] == ["2025-07-15", "2025-08-01"]
    assert [e["data"]["supersedes"] for e in certified] == [None, None]
    acquired = by_skill(await service.emitted(who.employee_id, "skill-acquired"), "ict-basics")
    assert [e["data"]["supersedes"] for e in acquired] == [None, None]
