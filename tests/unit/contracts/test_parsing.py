"""Raw bytes in, a typed event or a Rejection out: what `parse_inbound` / `parse_event` accept."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any, Final

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dxtalent_contracts import registry
from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.fiscal import JST
from dxtalent_contracts.inbound import CourseCompleted, CourseCompletedEvent
from dxtalent_contracts.registry import (
    ALL_EVENT_CLASSES,
    Rejection,
    parse_event,
    parse_inbound,
    type_name,
)
from dxtalent_contracts.types import ID_PATTERN

COMPLETED: Final = "dxtalent.lms.CourseCompleted.v1"

#: The envelope example of docs/contract.md.
CONTRACT_EXAMPLE: dict[str, Any] = {
    "specversion": "1.0",
    "id": "0b6f7c7e-2a51-4c55-9a0e-6d8d3c7a1f20",
    "source": "urn:hirakata:lms",
    "type": COMPLETED,
    "subject": "E000123",
    "time": "2025-06-12T09:30:00+09:00",
    "datacontenttype": "application/json",
    "data": {"employee_id": "E000123", "course_id": "DX-101", "completed_on": "2025-06-12"},
}


def _raw(envelope: dict[str, Any] | None = None, **data: Any) -> bytes:
    """The contract example with envelope attributes and `data` fields replaced (None removes)."""
    doc = json.loads(json.dumps(CONTRACT_EXAMPLE))
    doc["data"] = {k: v for k, v in {**doc["data"], **data}.items() if v is not None}
    doc.update(envelope or {})
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def _rejected(raw: bytes) -> Rejection:
    result = parse_inbound(raw)
    assert isinstance(result, Rejection), f"expected a Rejection, got {result!r}"
    return result


def test_the_contract_example_parses_into_a_typed_completion() -> None:
    """The envelope example of docs/contract.md is a CourseCompletedEvent with typed data."""
    event = parse_inbound(json.dumps(CONTRACT_EXAMPLE).encode())
    assert isinstance(event, CourseCompletedEvent)
    assert event.data == CourseCompleted(
        employee_id="E000123", course_id="DX-101", completed_on=dt.date(2025, 6, 12)
    )
    assert event.time == dt.datetime(2025, 6, 12, 9, 30, tzinfo=JST)
    assert event.nats_subject == "dx.inbound.completion"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"specversion": "1.0", ', "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        # beyond what Python's JSON decoder takes: refused, not raised (a poison message)
        (_raw(course_id=0).replace(b": 0", b": " + b"9" * 5000), "not valid JSON"),
        (_raw(course_id=0).replace(b": 0", b": " + b"[" * 5000 + b"]" * 5000), "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'"a string"', "not an object"),
        (_raw({"type": None}), "no CloudEvents 'type'"),
        (_raw({"type": "dxtalent.lms.CourseFailed.v1"}), "Unknown event type"),
    ],
)
def test_bytes_that_are_not_a_cloudevent_of_a_known_type_are_rejected(
    raw: bytes, reason: str
) -> None:
    """Bad JSON, non-object JSON, a missing or unknown type: a Rejection saying which."""
    rejection = _rejected(raw)
    assert reason in rejection.reason
    assert rejection.errors == []


@pytest.mark.parametrize(
    "raw",
    [b"\xef\xbb\xbf" + _raw(), _raw().replace(b'"specversion"', b'"x": NaN, "specversion"')],
    ids=["byte-order mark", "NaN"],
)
def test_json_that_only_pythons_decoder_takes_is_refused_by_the_wire_rules(raw: bytes) -> None:
    """A valid event is read in one pass of pydantic's JSON mode; what Python's decoder would
    take but that mode refuses (a byte-order mark, NaN) stays refused."""
    assert isinstance(parse_inbound(raw), Rejection)
    assert isinstance(parse_event(raw), Rejection)


def test_an_unknown_type_rejection_keeps_the_type_and_id_and_lists_the_known_ones() -> None:
    """The reason lists the accepted types; type and id are kept for the dead letter."""
    rejection = _rejected(_raw({"type": "dxtalent.lms.CourseFailed.v1"}))
    assert COMPLETED in rejection.reason
    assert rejection.event_type == "dxtalent.lms.CourseFailed.v1"
    assert rejection.event_id == CONTRACT_EXAMPLE["id"]


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        (_raw({"source": None}), "source", "Field required"),
        (_raw(completed_on=None), "data.completed_on", "Field required"),
        (_raw({"data": None}), "data", "Field required"),
        (_raw({"specversion": "0.3"}), "specversion", "'1.0'"),
        (_raw(completed_on=20250612), "data.completed_on", "valid date"),
        (_raw(course_id=["DX-101"]), "data.course_id", "valid string"),
        (_raw(employee_id="E 000123"), "data.employee_id", "pattern"),
        (_raw(employee_id="E" * 65), "data.employee_id", "pattern"),
        (_raw(employee_id="-E1"), "data.employee_id", "pattern"),
        (_raw(completed_on="2025-02-30"), "data.completed_on", "day value is outside"),
        (_raw(completed_on="1899-01-01"), "data.completed_on", "outside 2000-01-01"),
        (_raw({"time": "2025-06-12T09:30:00"}), "time", "timezone"),
        (_raw({"priority": "high"}), "priority", "Extra inputs"),
        (_raw(grade="A"), "data.grade", "Extra inputs"),
    ],
)
def test_invalid_fields_are_rejected_naming_the_field_path(
    raw: bytes, field: str, problem: str
) -> None:
    """Missing fields, wrong types, bad ids, impossible dates, naive times and unknown fields:
    the errors name the dotted field path, and the reason repeats it with the problem."""
    rejection = _rejected(raw)
    by_field = {e.field: e.problem for e in rejection.errors}
    assert field in by_field, rejection.errors
    assert problem in by_field[field]
    assert f"{field}: " in rejection.reason
    assert rejection.reason.startswith(f"Event {COMPLETED!r} {rejection.event_id!r} is not valid")
    assert rejection.event_type == COMPLETED


def test_inbound_parsing_refuses_domain_events_that_parse_event_accepts() -> None:
    """Only inbound fact types are accepted on dx.inbound.>; parse_event knows every type."""
    raw = _example(ALL_EVENT_CLASSES[-1]).to_json_bytes()
    assert "Unknown event type" in _rejected(raw).reason
    assert isinstance(parse_event(raw), ALL_EVENT_CLASSES[-1])


# --- round trip ---------------------------------------------------------------------------------

_DAY = "2025-06-12"
_DATA_EXAMPLES: dict[str, dict[str, Any]] = {
    "dxtalent.hr.EmployeeUpserted.v1": {
        "employee_id": "E000123",
        "department_code": "D001",
        "department_name": "総務課",
        "categories": ["section-chief", "business-system-owner"],
        "it_qualified_hire": True,
        "duty_skills": ["nocode-build"],
        "effective_date": "2025-04-01",
    },
    "dxtalent.hr.EmployeeLeft.v1": {"employee_id": "E000123", "left_on": "2026-03-31"},
    "dxtalent.hr.LeaderNominated.v1": {
        "employee_id": "E000123",
        "fiscal_year": 2025,
        "department_code": "D001",
        "nominated_by": "E000001",
    },
    "dxtalent.lms.CourseEnrolled.v1": {
        "employee_id": "E000123",
        "course_id": "DX-101",
        "enrolled_on": _DAY,
    },
    COMPLETED: {"employee_id": "E000123", "course_id": "DX-101", "completed_on": _DAY},
    "dxtalent.lms.CompletionVoided.v1": {
        "employee_id": "E000123",
        "course_id": "DX-101",
        "voided_event_id": "0b6f7c7e-2a51-4c55-9a0e-6d8d3c7a1f20",
        "reason": "誤登録",
    },
    "dxtalent.hr.ImprovementCaseReported.v1": {
        "case_id": "C2025-001",
        "department_code": "D001",
        "fiscal_year": 2025,
        "title": "窓口予約のオンライン化",
        "leader_employee_ids": ["E000123"],
        "skills_applied": ["online-procedures"],
        "hours_saved_per_year": 120.5,
    },
    "dxtalent.enrollment.CourseEnrolled.v1": {
        "employee_id": "E000123",
        "course_id": "DX-101",
        "enrolled_on": _DAY,
        "fiscal_year": 2025,
    },
    "dxtalent.enrollment.CourseCompleted.v1": {
        "employee_id": "E000123",
        "course_id": "DX-101",
        "completed_on": _DAY,
        "fiscal_year": 2025,
        "skills": ["dx-basics"],
        "fact_id": "0b6f7c7e-2a51-4c55-9a0e-6d8d3c7a1f20",
    },
    "dxtalent.certification.SkillAcquired.v1": {
        "employee_id": "E000123",
        "skill": "dx-basics",
        "course_id": "DX-101",
        "acquired_on": _DAY,
        "evidence_event_id": "f1",
    },
    "dxtalent.certification.SkillRevoked.v1": {
        "employee_id": "E000123",
        "skill": "dx-basics",
        "reason": "completion voided",
    },
    "dxtalent.certification.LevelCertified.v1": {
        "employee_id": "E000123",
        "level": 1,
        "fiscal_year": 2025,
        "certified_on": _DAY,
        "department_code": None,  # nullable without a default: must survive the round trip
        "evidence": [
            {"skill": "dx-basics", "course_id": "DX-101", "completed_on": _DAY, "event_id": "f1"}
        ],
        "policy_version": "hirakata-2025.1",
    },
    "dxtalent.certification.LevelRevoked.v1": {
        "employee_id": "E000123",
        "level": 2,
        "reason": "skill data-applied lost",
        "caused_by": "f2",
    },
    "dxtalent.enrollment.MessageRejected.v1": {
        "subject": "dx.inbound.completion",
        "reason": "The message is not valid JSON.",
        "errors": [{"field": "data.completed_on", "problem": "Field required"}],
        "original_base64": "e30=",
        "original_headers": {"Nats-Msg-Id": "x"},
        "received_at": "2025-06-12T09:30:00+09:00",
    },
}
# domain events that reuse an inbound data model
_DATA_EXAMPLES["dxtalent.enrollment.EmployeeUpdated.v1"] = _DATA_EXAMPLES[
    "dxtalent.hr.EmployeeUpserted.v1"
]
_DATA_EXAMPLES["dxtalent.enrollment.EmployeeLeft.v1"] = _DATA_EXAMPLES[
    "dxtalent.hr.EmployeeLeft.v1"
]
_DATA_EXAMPLES["dxtalent.enrollment.LeaderNominated.v1"] = _DATA_EXAMPLES[
    "dxtalent.hr.LeaderNominated.v1"
]
_DATA_EXAMPLES["dxtalent.enrollment.CompletionVoided.v1"] = _DATA_EXAMPLES[
    "dxtalent.lms.CompletionVoided.v1"
]
_DATA_EXAMPLES["dxtalent.enrollment.ImprovementCaseReported.v1"] = _DATA_EXAMPLES[
    "dxtalent.hr.ImprovementCaseReported.v1"
]


def _example(cls: type[CloudEvent], **envelope: Any) -> CloudEvent:
    etype = type_name(cls)
    return cls.model_validate_json(
        json.dumps(
            {
                "specversion": "1.0",
                "id": f"id-{etype}",
                "source": "urn:hirakata:test",
                "type": etype,
                "data": _DATA_EXAMPLES[etype],
                **envelope,
            }
        )
    )


def test_the_round_trip_examples_cover_every_event_type() -> None:
    """A new event class without an example here fails, so the round trip stays complete."""
    assert set(_DATA_EXAMPLES) == {type_name(c) for c in ALL_EVENT_CLASSES}


@pytest.mark.parametrize("cls", ALL_EVENT_CLASSES, ids=type_name)
def test_every_event_type_round_trips_through_its_json_bytes(cls: type[CloudEvent]) -> None:
    """to_json_bytes then parse_event gives back an equal event, with and without optional
    envelope attributes (subject, time, causation and correlation ids)."""
    bare = _example(cls)
    full = _example(
        cls,
        subject="E000123",
        time="2025-06-12T09:30:00+09:00",
        causationid="c-1",
        correlationid="r-1",
    )
    for event in (bare, full):
        assert parse_event(event.to_json_bytes()) == event
    unset = {"subject", "time", "causationid", "correlationid"}
    assert unset.isdisjoint(json.loads(bare.to_json_bytes()))


_ids = st.from_regex(ID_PATTERN, fullmatch=True)
_dates = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 12, 31))
_times = st.datetimes(min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(2100, 12, 30)).map(
    lambda t: t.replace(tzinfo=JST)
)


@given(employee_id=_ids, course_id=_ids, completed_on=_dates, time=_times, event_id=_ids)
def test_any_valid_completion_round_trips(
    employee_id: str, course_id: str, completed_on: dt.date, time: dt.datetime, event_id: str
) -> None:
    """Every id the pattern allows and every date in range survives serialize-then-parse."""
    event = CourseCompletedEvent(
        specversion="1.0",
        id=event_id,
        source="urn:hirakata:lms",
        type=COMPLETED,
        subject=employee_id,
        time=time,
        data=CourseCompleted(
            employee_id=employee_id, course_id=course_id, completed_on=completed_on
        ),
    )
    assert parse_inbound(event.to_json_bytes()) == event


def _decoded_first(raw: bytes) -> object:
    """How `parse_inbound` worked before it validated valid bytes in one pass."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection(f"The message is not valid JSON: {exc}.")
    return registry._parse(
        doc, registry._INBOUND_TYPES, lambda: registry._inbound_adapter.validate_json(raw)
    )


@pytest.mark.parametrize(
    "raw",
    [
        _raw(),
        b"\xef\xbb\xbf" + _raw(),  # a BOM: json decodes it, pydantic does not
        _raw(employee_id="E\\ud800"),  # a lone surrogate escape
        _raw().replace(b"E000123", b"E\xff00123", 1),  # not UTF-8
        _raw({"specversion": None}),
        b"[1, 2]",
        b'{"type": 1}',
        _raw({"type": "dxtalent.inbound.Nope.v1"}),
        b"{NaN",
    ],
    ids=[
        "valid",
        "bom",
        "surrogate",
        "invalid-utf8",
        "no-specversion",
        "array",
        "type",
        "unknown",
        "broken",
    ],
)
def test_one_pass_parse_accepts_and_refuses_as_decoding_first_did(raw: bytes) -> None:
    """Valid bytes are validated once; bytes pydantic refuses are decoded by `json` as well,
    so every fact gets the result, and every refusal the reason, of decoding first."""
    assert parse_inbound(raw) == _decoded_first(raw)


def _through_the_adapter(raw: bytes) -> object:
    """How `parse_event` read bytes before it called the core validator directly (0250)."""
    with contextlib.suppress(ValidationError):
        return registry._any_adapter.validate_json(raw)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return Rejection(f"The message is not valid JSON: {exc}.")
    return registry._parse(
        doc, registry._ALL_TYPES, lambda: registry._any_adapter.validate_json(raw)
    )


@given(
    cls=st.sampled_from(ALL_EVENT_CLASSES),
    at=st.integers(min_value=0, max_value=400),
    cut=st.integers(min_value=0, max_value=3),
    insert=st.binary(max_size=3) | st.sampled_from([b'"', b"}", b",", b"0", b"null", b"\\"]),
)
def test_the_core_validator_accepts_and_refuses_as_the_adapter_did(
    cls: type[CloudEvent], at: int, cut: int, insert: bytes
) -> None:
    """Any event's bytes, intact or damaged anywhere: the same event or the same reason."""
    raw = _example(cls).to_json_bytes()
    damaged = raw[:at] + insert + raw[at + cut :]
    for candidate in (raw, damaged):
        assert parse_event(candidate) == _through_the_adapter(candidate)
