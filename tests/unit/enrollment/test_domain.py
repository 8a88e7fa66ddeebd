"""Enrollment rules: which well-formed facts the catalog accepts, and what is recorded."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dxtalent.citygen import generate_city
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.events import CourseCompletedRecordedEvent, CourseCompletionRecorded
from dxtalent_contracts.fiscal import fiscal_year_of
from dxtalent_contracts.inbound import CourseCompletedEvent, InboundEvent
from dxtalent_contracts.registry import Rejection, parse_inbound, type_name
from dxtalent_enrollment.domain import (
    FACT_NAMESPACE,
    catalog_problems,
    fact_event_id,
    inbound_problem,
    record,
    subject_problem,
)

CATALOG = load_catalog()
RECEIVED = dt.datetime(2025, 7, 1, 0, 0, tzinfo=dt.UTC)


def _event(type_: str, data: dict[str, Any], **envelope: Any) -> InboundEvent:
    doc = {"specversion": "1.0", "id": "f-1", "source": "urn:test", "type": type_, "data": data}
    parsed = parse_inbound(json.dumps(doc | envelope).encode())
    assert not isinstance(parsed, Rejection), parsed
    return parsed


def _completion(
    course: str = "DX-101", completed_on: str = "2026-03-31", **env: Any
) -> InboundEvent:
    data = {"employee_id": "E1", "course_id": course, "completed_on": completed_on}
    return _event("dxtalent.lms.CourseCompleted.v1", data, **env)


def test_a_catalog_course_is_accepted() -> None:
    """A completion of a catalog course has no problems."""
    assert catalog_problems(CATALOG, _completion()) == []


def test_an_unknown_course_is_refused_naming_the_field_and_the_catalog() -> None:
    """A course id the catalog does not list is a field error on data.course_id."""
    [problem] = catalog_problems(CATALOG, _completion(course="NOPE-1"))
    assert problem.field == "data.course_id"
    assert "NOPE-1" in problem.problem
    assert CATALOG.policy_version in problem.problem


@pytest.mark.parametrize("completed_on", ["2024-04-01", "2024-10-15", "2025-03-31"])
def test_a_fy2024_course_completed_in_fy2024_is_accepted(completed_on: str) -> None:
    """R6-DX ran in FY2024: completions from its first to its last day are facts."""
    assert catalog_problems(CATALOG, _completion("R6-DX", completed_on)) == []


@pytest.mark.parametrize("completed_on", ["2024-03-31", "2025-04-01", "2026-06-01"])
def test_a_completion_outside_the_offering_period_is_refused_naming_it(completed_on: str) -> None:
    """R6-DATA dated outside FY2024 is bad input: data.completed_on, the period, the date."""
    [problem] = catalog_problems(CATALOG, _completion("R6-DATA", completed_on))
    assert problem.field == "data.completed_on"
    assert problem.problem == (
        "course 'R6-DATA' ran only in FY2024 (令和6年度), 2024-04-01 to 2025-03-31 "
        f"(catalog {CATALOG.policy_version}); a completion dated {completed_on} is outside "
        "its offering period"
    )


def test_an_enrollment_or_void_is_not_judged_by_the_offering_period() -> None:
    """Only completions are dated facts of the course having run; a void has no date."""
    enrolled = _event(
        "dxtalent.lms.CourseEnrolled.v1",
        {"employee_id": "E1", "course_id": "R6-DX", "enrolled_on": "2026-06-01"},
    )
    assert catalog_problems(CATALOG, enrolled) == []


def test_inbound_problem_gives_the_reason_a_dead_letter_carries() -> None:
    """One sentence naming the event, the field and the period; the errors alongside."""
    event = _completion("R6-DSGN", "2026-05-01", id="late-1")
    problem = inbound_problem(CATALOG, event, "dx.inbound.completion")
    assert problem is not None
    assert problem.reason.startswith(
        "Event 'dxtalent.lms.CourseCompleted.v1' 'late-1' is not valid: data.completed_on: "
        "course 'R6-DSGN' ran only in FY2024 (令和6年度), 2024-04-01 to 2025-03-31"
    )
    assert [e.field for e in problem.errors] == ["data.completed_on"]
    assert inbound_problem(CATALOG, _completion(), "dx.inbound.completion") is None
    assert inbound_problem(CATALOG, _completion()) is None  # no subject: not checked


def test_inbound_problem_checks_the_subject_first() -> None:
    """A completion on the nomination subject: the subject problem, no field errors."""
    problem = inbound_problem(CATALOG, _completion(course="NOPE-1"), "dx.inbound.nomination")
    assert problem is not None
    assert "dx.inbound.completion" in problem.reason
    assert problem.errors == []


def test_unknown_categories_and_duty_skills_are_refused_one_by_one() -> None:
    """Each unknown staff category and duty skill of an employee record is its own error."""
    record_ = _event(
        "dxtalent.hr.EmployeeUpserted.v1",
        {
            "employee_id": "E1",
            "department_code": "D1",
            "categories": ["section-chief", "wizard"],
            "duty_skills": ["nocode-build", "levitation"],
            "effective_date": "2025-04-01",
        },
    )
    fields = [p.field for p in catalog_problems(CATALOG, record_)]
    assert fields == ["data.categories.1", "data.duty_skills.1"]


def test_a_fact_on_the_wrong_subject_is_refused() -> None:
    """Each inbound type has one subject; a completion on the nomination subject is refused."""
    event = _completion()
    assert subject_problem(event, "dx.inbound.completion") is None
    problem = subject_problem(event, "dx.inbound.nomination")
    assert problem is not None
    assert "dx.inbound.completion" in problem


def test_a_completion_is_recorded_with_its_fiscal_year_skills_and_fact_id() -> None:
    """Recorded on the employee's stream with the fiscal year of its date (2026-03-31 is
    FY2025), the skills its course grants and the inbound id that voids refer to."""
    fact = record(CATALOG, _completion(), RECEIVED)
    assert fact.stream_id == "employee-E1"
    assert fact.event_type == "dxtalent.enrollment.CourseCompleted.v1"
    assert fact.data["fiscal_year"] == 2025
    assert fact.data["skills"] == ["dx-basics", "municipal-dx-basics"]
    assert fact.data["fact_id"] == "f-1"


def test_the_same_source_and_id_is_the_same_recorded_event() -> None:
    """The recorded id derives from (source, id): a resend is recognised, another source is not."""
    assert record(CATALOG, _completion(), RECEIVED).event_id == fact_event_id("urn:test", "f-1")
    assert fact_event_id("urn:test", "f-1") != fact_event_id("urn:other", "f-1")


@pytest.mark.parametrize(
    ("envelope", "occurred", "correlation"),
    [
        ({}, RECEIVED, "f-1"),
        (
            {"time": "2025-06-12T09:30:00+09:00", "correlationid": "hr-batch-7"},
            dt.datetime(2025, 6, 12, 0, 30, tzinfo=dt.UTC),
            "hr-batch-7",
        ),
    ],
)
def test_time_and_correlation_come_from_the_envelope_when_given(
    envelope: dict[str, str], occurred: dt.datetime, correlation: str
) -> None:
    """occurred_at is the event's time, else when it was received; the correlation id is
    carried, else the fact starts its own correlation; the fact itself is the cause."""
    fact = record(CATALOG, _completion(**envelope), RECEIVED)
    assert fact.occurred_at == occurred
    assert fact.correlation_id == correlation
    assert fact.causation_id == "f-1"


def test_an_improvement_case_is_recorded_on_its_own_stream() -> None:
    """Improvement cases are about a department, not one employee."""
    case = _event(
        "dxtalent.hr.ImprovementCaseReported.v1",
        {
            "case_id": "C1",
            "department_code": "D1",
            "fiscal_year": 2025,
            "title": "窓口予約のオンライン化",
            "leader_employee_ids": ["E1"],
            "skills_applied": ["online-procedures"],
        },
    )
    assert catalog_problems(CATALOG, case) == []
    assert record(CATALOG, case, RECEIVED).stream_id == "case-C1"


def _recorded_the_model_way(event: CourseCompletedEvent) -> tuple[str, str, dict[str, Any]]:
    """What `record` made of a completion before it wrote the data out by hand: the recorded
    model, validated, then dumped."""
    d = event.data
    completion = CourseCompletionRecorded(
        employee_id=d.employee_id,
        course_id=d.course_id,
        completed_on=d.completed_on,
        fiscal_year=fiscal_year_of(d.completed_on),
        skills=list(CATALOG.course_by_id[d.course_id].grants),
        fact_id=event.id,
    )
    return (
        f"employee-{d.employee_id}",
        type_name(CourseCompletedRecordedEvent),
        completion.model_dump(mode="json"),
    )


@settings(max_examples=300)
@given(
    employee=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,20}\Z"),
    course=st.sampled_from(sorted(CATALOG.course_by_id)),
    day=st.dates(dt.date(2019, 4, 1), dt.date(2035, 3, 31)),
    fact_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,40}\Z"),
)
def test_a_completion_records_what_its_recorded_model_would_dump(
    employee: str, course: str, day: dt.date, fact_id: str
) -> None:
    """The hand-written completion data is the recorded model's dump, keys' order included,
    and a recorded fact's id is still `uuid.uuid5` of its source and id."""
    doc = {
        "specversion": "1.0",
        "id": fact_id,
        "source": "urn:test",
        "type": "dxtalent.lms.CourseCompleted.v1",
        "data": {"employee_id": employee, "course_id": course, "completed_on": day.isoformat()},
    }
    parsed = parse_inbound(json.dumps(doc).encode())
    assume(not isinstance(parsed, Rejection))
    assert isinstance(parsed, CourseCompletedEvent)
    fact = record(CATALOG, parsed, RECEIVED)
    stream, event_type, data = _recorded_the_model_way(parsed)
    assert (fact.stream_id, fact.event_type) == (stream, event_type)
    assert list(fact.data.items()) == list(data.items())
    assert fact.event_id == str(uuid.uuid5(FACT_NAMESPACE, f"urn:test\x00{fact_id}"))


def test_every_fact_of_a_city_records_as_before() -> None:
    """Every completion of a generated city gives the recorded model's dump (the other types
    are dumped from their models as before)."""
    city = generate_city(CATALOG, seed=3, staff=300)
    completions = [e for e in city.events if isinstance(e, CourseCompletedEvent)]
    assert completions
    for event in completions:
        fact = record(CATALOG, event, RECEIVED)
        assert (fact.stream_id, fact.event_type, fact.data) == _recorded_the_model_way(event)
