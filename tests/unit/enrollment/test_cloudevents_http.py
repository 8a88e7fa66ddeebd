"""The CloudEvents HTTP binding's three modes read into events, and bodies that are none."""

from __future__ import annotations

import json

import pytest

from dxtalent_contracts.catalog import load_catalog
from dxtalent_enrollment.cloudevents_http import (
    BATCH,
    BINARY,
    STRUCTURED,
    UnreadableError,
    attribute,
    read_events,
)
from dxtalent_enrollment.domain import InboundProblem, check_inbound

EVENT = {
    "specversion": "1.0",
    "id": "lms-1",
    "source": "urn:hirakata:lms",
    "type": "dxtalent.lms.CourseCompleted.v1",
    "data": {"employee_id": "E1", "course_id": "DX-101", "completed_on": "2025-06-12"},
}


def test_structured_batched_and_binary_modes_give_the_same_event() -> None:
    """The same fact in each mode reads to the same typed event."""
    headers = {f"ce-{k}": str(v) for k, v in EVENT.items() if k != "data"}
    reads = [
        read_events(f"{STRUCTURED}; charset=utf-8", json.dumps(EVENT).encode(), {}),
        read_events(BATCH, json.dumps([EVENT]).encode(), {}),
        read_events(BINARY, json.dumps(EVENT["data"]).encode(), headers | {"x-other": "1"}),
    ]
    catalog = load_catalog()
    events = [check_inbound(catalog, raw) for [raw] in reads]
    assert all(not isinstance(e, InboundProblem) for e in events)
    assert len({e.model_dump_json() for e in events}) == 1  # type: ignore[union-attr]


def test_binary_mode_without_attributes_is_an_event_the_check_refuses() -> None:
    """No ce-* headers: an event all the same, refused for its missing attributes."""
    [raw] = read_events(BINARY, json.dumps(EVENT["data"]).encode(), {})
    problem = check_inbound(load_catalog(), raw)
    assert isinstance(problem, InboundProblem)
    assert "no CloudEvents 'type'" in problem.reason
    assert attribute(raw, "id") is None


@pytest.mark.parametrize(
    ("content_type", "body", "status", "says"),
    [
        ("text/plain", b"{}", 415, "not a CloudEvents mode"),
        (None, b"{}", 415, "None"),
        (STRUCTURED, b"[]", 400, "one CloudEvent"),
        (STRUCTURED, b"{", 400, "not valid JSON"),
        (BATCH, b"[]", 400, "non-empty JSON array"),
        (BATCH, b'[{}, "x"]', 400, "batch items [1]"),
        (BINARY, b"[1]", 400, "the event's data"),
    ],
)
def test_bodies_that_are_not_events(
    content_type: str | None, body: bytes, status: int, says: str
) -> None:
    """Another content type is 415; a body of the wrong shape for its mode is 400."""
    with pytest.raises(UnreadableError) as info:
        read_events(content_type, body, {})
    assert info.value.status == status
    assert says in str(info.value)
