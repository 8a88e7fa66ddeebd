"""corrections.mark: given the ledger of what was sent, when decide's changes arrive, then which
are sent, and which earlier event each one supersedes."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_certification.domain.corrections import (
    SentEvent,
    SentLedger,
    mark,
    mark_with_data,
    sent_data,
)
from dxtalent_certification.domain.decide import DomainChange, decide, evolve
from dxtalent_certification.domain.facts import EmployeeFacts, Fact
from dxtalent_certification.domain.state import CertificationState
from dxtalent_certification.handler import EMITTED_NAMESPACE, apply_fact, emitted_event_id
from dxtalent_certification.projection import EmployeeRow
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.events import (
    Evidence,
    LevelCertified,
    LevelRevoked,
    SkillAcquired,
    SkillRevoked,
)
from tests.unit.certification.builders import L1_COURSES, Given, d
from tests.unit.certification.test_properties import EMPLOYEE, EXAMPLES, employee_facts, evaluated

CATALOG = load_catalog()
E = EMPLOYEE


def certified(on: str = "2025-07-01", evidence: tuple[str, ...] = ("cmp-1",)) -> LevelCertified:
    """Level 1, certified on `on`, evidenced by completions `evidence`."""
    return LevelCertified(
        employee_id=E,
        level=1,
        fiscal_year=2025,
        certified_on=d(on),
        department_code="D-SOUMU",
        evidence=[
            Evidence(skill="dx", course_id="DX-101", completed_on=d(on), event_id=i)
            for i in evidence
        ],
        policy_version="p-1",
    )


def acquired(on: str = "2025-06-01", evidence: str = "cmp-1") -> SkillAcquired:
    """Skill dx-basics, acquired on `on` by completion `evidence`."""
    return SkillAcquired(
        employee_id=E,
        skill="dx-basics",
        course_id="DX-101",
        acquired_on=d(on),
        evidence_event_id=evidence,
    )


def sent(*entries: tuple[str, DomainChange]) -> SentLedger:
    """The ledger after sending `entries` (id, change), one after the other."""
    return mark([c for _, c in entries], [i for i, _ in entries], SentLedger.empty())[1]


def supersedes(change: DomainChange) -> str | None:
    assert isinstance(change, LevelCertified | SkillAcquired)
    return change.supersedes


def test_a_new_certification_supersedes_nothing() -> None:
    """Given nothing sent, LevelCertified is sent with supersedes None and enters the ledger."""
    [(event_id, change)], ledger = mark([certified()], ["ev-1"], SentLedger.empty())
    assert (event_id, supersedes(change)) == ("ev-1", None)
    assert ledger == SentLedger({"level:1": SentEvent("ev-1", sent_data(certified()))})


def test_a_redated_level_supersedes_the_last_one_sent() -> None:
    """Given level 1 sent as ev-1, a new certified_on is sent with supersedes ev-1."""
    [(_, change)], ledger = mark([certified("2025-06-15")], ["ev-2"], sent(("ev-1", certified())))
    assert supersedes(change) == "ev-1"
    assert change == certified("2025-06-15").model_copy(update={"supersedes": "ev-1"})
    assert ledger.entries["level:1"] == SentEvent("ev-2", sent_data(certified("2025-06-15")))


def test_an_evidence_only_change_is_a_correction() -> None:
    """Same date, other evidence: sent, superseding the last one sent."""
    other = certified(evidence=("cmp-9",))
    [(_, change)], _ = mark([other], ["ev-2"], sent(("ev-1", certified())))
    assert supersedes(change) == "ev-1"


def test_a_correction_supersedes_the_latest_correction() -> None:
    """Three dates in a row: each supersedes the one just before it, not the first."""
    ledger = sent(("ev-1", certified()), ("ev-2", certified("2025-06-15")))
    [(_, change)], _ = mark([certified("2025-06-10")], ["ev-3"], ledger)
    assert supersedes(change) == "ev-2"


def test_data_equal_to_the_last_sent_is_not_sent_again() -> None:
    """The same LevelCertified as last sent is dropped; the ledger keeps the first id."""
    ledger = sent(("ev-1", certified()))
    kept, after = mark([certified()], ["ev-2"], ledger)
    assert kept == []
    assert after == ledger


def test_a_dropped_change_does_not_shift_the_ids_of_the_others() -> None:
    """Each kept change keeps the id given at its place in decide's list."""
    ledger = sent(("ev-1", acquired()))
    kept, _ = mark([acquired(), certified()], ["id-0", "id-1"], ledger)
    assert [i for i, _ in kept] == ["id-1"]


def test_a_revocation_clears_the_key_so_a_recertification_is_new() -> None:
    """LevelRevoked is sent and forgets level 1: certified again, even with the very same
    data, it supersedes nothing."""
    revoked = LevelRevoked(employee_id=E, level=1, reason="lost", caused_by="void-1")
    kept, ledger = mark([revoked], ["ev-2"], sent(("ev-1", certified())))
    assert kept == [("ev-2", revoked)]
    assert ledger == SentLedger.empty()
    [(_, change)], _ = mark([certified()], ["ev-3"], ledger)
    assert supersedes(change) is None


def test_skills_are_marked_like_levels() -> None:
    """SkillAcquired: a new evidence supersedes; after SkillRevoked it is new again."""
    ledger = sent(("ev-1", acquired()))
    [(_, corrected)], ledger = mark([acquired("2025-05-01", "cmp-0")], ["ev-2"], ledger)
    revoked = SkillRevoked(employee_id=E, skill="dx-basics", reason="voided")
    _, ledger = mark([revoked], ["ev-3"], ledger)
    [(_, again)], _ = mark([acquired()], ["ev-4"], ledger)
    assert (supersedes(corrected), supersedes(again)) == ("ev-1", None)


def test_keys_are_independent() -> None:
    """Level 2 first sent supersedes nothing though level 1 was sent."""
    level_two = certified().model_copy(update={"level": 2})
    [(_, change)], _ = mark([level_two], ["ev-2"], sent(("ev-1", certified())))
    assert supersedes(change) is None


def test_ids_must_match_the_changes() -> None:
    """One id per change, or ValueError naming both counts."""
    with pytest.raises(ValueError, match="2 changes but 1 ids"):
        mark([certified(), acquired()], ["ev-1"], SentLedger.empty())


def test_a_late_earlier_completion_redates_the_level_as_a_correction() -> None:
    """Through decide: level 1 certified on July 15, then a late June 5 completion of the same
    course re-dates it; the LevelCertified it emits supersedes the first one."""
    who = Given(E)
    who.record()
    who.nomination(2025)
    facts: list[Fact] = [*who.facts, *who.completions(L1_COURSES[:-1], "2025-06-01")]
    facts.append(who.completion(L1_COURSES[-1], "2025-07-15"))
    late = who.completion(L1_COURSES[-1], "2025-06-05")
    steps = marked_steps([*facts, late])
    first = next(c for i, c in steps[-2] if isinstance(c, LevelCertified))
    [redated] = [c for _, c in steps[-1] if isinstance(c, LevelCertified)]
    first_id = next(i for i, c in steps[-2] if c is first)
    assert (first.supersedes, redated.supersedes) == (None, first_id)
    assert redated.certified_on == d("2025-06-05")


def key_by_hand(change: DomainChange) -> str:
    if isinstance(change, LevelCertified | LevelRevoked):
        return f"level:{change.level}"
    return f"skill:{change.skill}"


def marked_steps(facts: list[Fact]) -> list[list[tuple[str, DomainChange]]]:
    """Decide then mark each fact in order; ids are `<fact id>/<index in decide's list>`."""
    known, state, ledger = EmployeeFacts(E), CertificationState.empty(E), SentLedger.empty()
    steps = []
    for fact in facts:
        known, state, changes = decide(CATALOG, known, state, fact)
        ids = [f"{fact.fact_id}/{i}" for i in range(len(changes))]
        kept, ledger = mark(changes, ids, ledger)
        steps.append(kept)
    return steps


@EXAMPLES
@given(facts=employee_facts(), data=st.data())
def test_every_sent_event_supersedes_exactly_the_last_one_sent_for_its_key(
    facts: list[Fact], data: st.DataObject
) -> None:
    """Any arrival: folding what is sent still gives the state; each LevelCertified /
    SkillAcquired supersedes the last one sent for its key since its last revocation, and
    never repeats its data."""
    arrival = data.draw(st.permutations(facts))
    folded = CertificationState.empty(E)
    last: dict[str, tuple[str, dict[str, object]]] = {}
    for i, step in enumerate(marked_steps(arrival)):
        for event_id, change in step:
            folded = evolve(folded, change)
            key = key_by_hand(change)
            if isinstance(change, LevelRevoked | SkillRevoked):
                last.pop(key, None)
                continue
            before = last.get(key)
            assert change.supersedes == (before[0] if before else None)
            assert before is None or before[1] != sent_data(change)
            last[key] = (event_id, sent_data(change))
        assert folded == evaluated(arrival[: i + 1])


def test_applying_one_event_to_one_row_twice_gives_the_same_ids() -> None:
    """handler.apply_fact is a function of the row and the causing event: a redelivery after
    a crash (same row, same event) sends the same events under the same ids, each the id of
    its place in decide's list."""
    who = Given(E)
    who.record()
    who.nomination(2025)
    row = EmployeeRow(EmployeeFacts(E), CertificationState.empty(E), SentLedger.empty())
    for fact in [*who.facts, *who.completions(L1_COURSES[:-1], "2025-06-01")]:
        row, _ = apply_fact(CATALOG, row, fact, f"cause-{fact.fact_id}")
    last = who.completion(L1_COURSES[-1], "2025-07-15")

    once = apply_fact(CATALOG, row, last, "cause-last")
    again = apply_fact(CATALOG, row, last, "cause-last")

    assert once == again
    ids = [event_id for event_id, _ in once[1]]
    assert ids == [emitted_event_id("cause-last", i) for i in range(len(ids))]
    assert once[0].sent.entries["level:1"].event_id == ids[-1]


@settings(max_examples=300, deadline=None)
@given(cause=st.text(st.characters(codec="utf-8")), index=st.integers(0, 50))
def test_emitted_ids_are_the_uuid5_they_always_were(cause: str, index: int) -> None:
    """The hand-rolled id is `uuid.uuid5(EMITTED_NAMESPACE, cause NUL index)`, as before."""
    expected = uuid.uuid5(EMITTED_NAMESPACE, f"{cause}\x00{index}")
    assert emitted_event_id(cause, index) == str(expected)


@EXAMPLES
@given(facts=employee_facts(), data=st.data())
def test_the_data_beside_each_marked_change_is_its_model_dump(
    facts: list[Fact], data: st.DataObject
) -> None:
    """`mark_with_data` marks as `mark` does, and the data beside each change sent is its
    `model_dump(mode="json")`, keys in the same order (the handler sends it as the event's
    data instead of dumping the change again)."""
    known, state, ledger = EmployeeFacts(E), CertificationState.empty(E), SentLedger.empty()
    for fact in data.draw(st.permutations(facts)):
        known, state, changes = decide(CATALOG, known, state, fact)
        ids = [f"{fact.fact_id}/{i}" for i in range(len(changes))]
        kept, datas, after = mark_with_data(changes, ids, ledger)
        assert (kept, after) == mark(changes, ids, ledger)
        dumped = [change.model_dump(mode="json") for _, change in kept]
        assert datas == dumped
        assert [list(d) for d in datas] == [list(d) for d in dumped]
        ledger = after
