"""The certification service's edges: enrollment events as facts, and the read model's JSON
(`codec`) round-tripping every kind of fact and state."""

from __future__ import annotations

import datetime as dt
import json
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_certification.codec import (
    _dumps,
    _load,
    facts_from_json,
    facts_to_json,
    ledger_from_json,
    ledger_to_json,
    state_from_json,
    state_to_json,
)
from dxtalent_certification.domain.corrections import SentLedger, mark
from dxtalent_certification.domain.decide import changes
from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_certification.domain.facts import (
    Completion,
    Departure,
    EmployeeFacts,
    EmployeeRecord,
    Fact,
    Nomination,
    Void,
)
from dxtalent_certification.domain.state import CertificationState
from dxtalent_certification.enrollment_facts import UnexpectedEventError, fact_of
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.events import (
    CompletionVoidedRecordedEvent,
    CourseCompletedRecordedEvent,
    CourseCompletionRecorded,
    CourseEnrolledRecordedEvent,
    CourseEnrollmentRecorded,
    EmployeeLeftRecordedEvent,
    EmployeeUpdatedEvent,
    ImprovementCaseRecordedEvent,
    LeaderNominatedRecordedEvent,
    LeaderNominationRecorded,
    SkillRevoked,
    SkillRevokedEvent,
)
from dxtalent_contracts.inbound import (
    CompletionVoided,
    EmployeeLeft,
    EmployeeUpserted,
    ImprovementCaseReported,
)
from dxtalent_contracts.registry import AnyEvent, type_name
from tests.unit.certification.builders import (
    EQUIVALENCE_COURSES,
    L1_COURSES,
    L2_COURSES,
    Given,
)
from tests.unit.certification.test_properties import EMPLOYEE, employee_facts

CATALOG = load_catalog()
E = "E000777"
D = dt.date.fromisoformat


def envelope(cls: type[CloudEvent], event_id: str, data: object) -> AnyEvent:
    """An enrollment event as the relay publishes it."""
    event = cls.model_validate(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "urn:hirakata:dxtalent:enrollment",
            "type": type_name(cls),
            "subject": E,
            "data": data,
        }
    )
    return cast(AnyEvent, event)


# --- fact_of ----------------------------------------------------------------------------------


def test_an_employee_update_is_a_record_identified_by_the_event_id() -> None:
    """EmployeeUpdated -> EmployeeRecord with every field, fact id = the event's id."""
    data = EmployeeUpserted(
        employee_id=E,
        department_code="D-SOUMU",
        categories=["dx-leader", "section-chief"],
        duty_skills=["nocode-build"],
        it_qualified_hire=True,
        effective_date=D("2025-04-01"),
    )
    fact = fact_of(envelope(EmployeeUpdatedEvent, "ev-rec", data))
    assert fact == EmployeeRecord(
        "ev-rec",
        E,
        "D-SOUMU",
        frozenset({"dx-leader", "section-chief"}),
        frozenset({"nocode-build"}),
        D("2025-04-01"),
        it_qualified_hire=True,
    )


def test_a_completion_is_identified_by_the_inbound_id_that_voids_refer_to() -> None:
    """CourseCompleted -> Completion whose fact id is data.fact_id, not the event id."""
    data = CourseCompletionRecorded(
        employee_id=E,
        course_id="DX-101",
        completed_on=D("2025-06-12"),
        fiscal_year=2025,
        skills=["dx-basics"],
        fact_id="inbound-1",
    )
    fact = fact_of(envelope(CourseCompletedRecordedEvent, "ev-cmp", data))
    assert fact == Completion("inbound-1", E, "DX-101", D("2025-06-12"))


def test_a_void_points_at_the_voided_inbound_id() -> None:
    """CompletionVoided -> Void(voided_fact_id = data.voided_event_id)."""
    data = CompletionVoided(
        employee_id=E, course_id="DX-101", voided_event_id="inbound-1", reason="typo"
    )
    fact = fact_of(envelope(CompletionVoidedRecordedEvent, "ev-void", data))
    assert fact == Void("ev-void", E, "DX-101", "inbound-1", "typo")


def test_nominations_and_departures_are_identified_by_the_event_id() -> None:
    """LeaderNominated -> Nomination, EmployeeLeft -> Departure."""
    nomination = LeaderNominationRecorded(employee_id=E, fiscal_year=2025, department_code="D-1")
    left = EmployeeLeft(employee_id=E, left_on=D("2026-03-31"))
    assert fact_of(envelope(LeaderNominatedRecordedEvent, "ev-nom", nomination)) == Nomination(
        "ev-nom", E, 2025, "D-1"
    )
    assert fact_of(envelope(EmployeeLeftRecordedEvent, "ev-left", left)) == Departure(
        "ev-left", E, D("2026-03-31")
    )


def test_enrolments_and_improvement_cases_change_no_certification() -> None:
    """CourseEnrolled and ImprovementCaseReported map to no fact."""
    enrolled = CourseEnrollmentRecorded(
        employee_id=E, course_id="DX-101", enrolled_on=D("2025-05-01"), fiscal_year=2025
    )
    case = ImprovementCaseReported(
        case_id="C1",
        department_code="D-1",
        fiscal_year=2025,
        title="paperless",
        leader_employee_ids=[E],
        skills_applied=["dx-basics"],
    )
    assert fact_of(envelope(CourseEnrolledRecordedEvent, "ev-enr", enrolled)) is None
    assert fact_of(envelope(ImprovementCaseRecordedEvent, "ev-case", case)) is None


def test_a_certification_event_is_not_an_enrollment_fact() -> None:
    """Anything but an enrollment event is refused with a readable reason."""
    revoked = SkillRevoked(employee_id=E, skill="dx-basics", reason="voided")
    with pytest.raises(UnexpectedEventError, match="not an enrollment event"):
        fact_of(envelope(SkillRevokedEvent, "ev-x", revoked))


# --- read-model JSON --------------------------------------------------------------------------


def rich_employee() -> Given:
    """Every kind of fact, two levels, an equivalence, a void and a departure."""
    given = Given(E)
    given.record(effective="2023-04-01", duty=["nocode-build"], categories=["dx-leader"])
    given.record(department="D-KIKAKU", effective="2025-04-01", categories=["section-chief"])
    given.nomination(2024)
    given.nomination(2025, department="D-KIKAKU")
    for course in EQUIVALENCE_COURSES:
        given.completion(course, "2024-10-01")
    given.completions(L1_COURSES, "2025-05-01")
    given.completions(L2_COURSES, "2025-09-01")
    given.void(given.completion("SEC-301", "2025-10-01"), reason="wrong person, 本人ではない")
    given.departure("2027-03-31")
    return given


def test_facts_survive_a_round_trip() -> None:
    """facts_from_json(facts_to_json(f)) == f for every kind of fact."""
    facts = rich_employee().employee_facts
    assert facts_from_json(facts_to_json(facts)) == facts


def test_state_survives_a_round_trip() -> None:
    """state_from_json(state_to_json(s)) == s, levels with evidence included."""
    state = rich_employee().state(CATALOG)
    assert state.highest_level == 2
    assert state_from_json(state_to_json(state)) == state


def test_the_sent_ledger_survives_a_round_trip() -> None:
    """ledger_from_json(ledger_to_json(l)) == l for the ledger of every level and skill."""
    state = rich_employee().state(CATALOG)
    sent = changes(CATALOG, CertificationState.empty(E), state, "fact-1")
    _, ledger = mark(sent, [f"ev-{i}" for i in range(len(sent))], SentLedger.empty())
    assert len(ledger.entries) == len(state.skills) + len(state.levels)
    assert ledger_from_json(ledger_to_json(ledger)) == ledger


def test_empty_values_survive_a_round_trip() -> None:
    """An employee with no facts, no state and nothing sent encodes and decodes too."""
    assert facts_from_json(facts_to_json(EmployeeFacts(E))) == EmployeeFacts(E)
    empty = CertificationState.empty(E)
    assert state_from_json(state_to_json(empty)) == empty
    assert ledger_from_json(ledger_to_json(SentLedger.empty())) == SentLedger.empty()


def test_equal_values_encode_to_equal_text() -> None:
    """Fact sets built in another order write the same JSON (sorted by fact id)."""
    given = rich_employee()
    reordered = EmployeeFacts.of(E, reversed(given.facts))
    assert facts_to_json(reordered) == facts_to_json(given.employee_facts)


def test_an_unknown_format_is_refused() -> None:
    """A row written in a format this code does not know is not misread."""
    doc = json.loads(facts_to_json(EmployeeFacts(E)))
    doc["v"] = 99
    with pytest.raises(ValueError, match="unknown read-model format 99"):
        facts_from_json(json.dumps(doc))


@settings(max_examples=100, deadline=None)
@given(facts=employee_facts())
def test_any_facts_and_their_state_survive_a_round_trip(facts: list[Fact]) -> None:
    """Generated facts (voids, ties, departures) and the state they earn round-trip."""
    known = EmployeeFacts.of(EMPLOYEE, facts)
    state = evaluate(CATALOG, known)
    assert facts_from_json(facts_to_json(known)) == known
    assert state_from_json(state_to_json(state)) == state


#: the values the documents hold: text (any, but lone surrogates, which PostgreSQL refuses),
#: 64-bit integers, booleans, null, lists and objects (no floats)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8")), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_the_encoder_writes_the_text_json_dumps_wrote(doc: dict[str, object]) -> None:
    """The codec's encoder (pydantic-core's) writes exactly what it replaced,
    json.dumps(ensure_ascii=False, separators=(",", ":")): rows written before and after read
    and compare alike."""
    assert _dumps(doc) == json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def test_a_rich_employee_encodes_as_json_dumps_did() -> None:
    """Facts, state and ledger of every kind: the same text as json.dumps wrote."""
    given = rich_employee()
    state = given.state(CATALOG)
    sent = changes(CATALOG, CertificationState.empty(E), state, "fact-1")
    _, ledger = mark(sent, [f"ev-{i}" for i in range(len(sent))], SentLedger.empty())
    for text in (facts_to_json(given.employee_facts), state_to_json(state), ledger_to_json(ledger)):
        assert text == json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_the_decoder_reads_what_json_loads_read(doc: dict[str, object]) -> None:
    """`_load` (pydantic-core's parser) gives the values `json.loads` gave, from compact text
    and from the layout PostgreSQL's `jsonb::text` writes (spaces after `,` and `:`)."""
    doc = {**doc, "v": 1}
    for text in (_dumps(doc), json.dumps(doc, ensure_ascii=False)):
        assert _load(text) == json.loads(text)
