"""Decoded JSON (a dict, as FastStream hands it to a handler) is accepted and refused exactly as
the bytes it came from: by `parse_event_json` and by the models themselves."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from faststream.nats import NatsBroker, TestNatsBroker
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dxtalent_contracts import (
    ALL_EVENT_CLASSES,
    CloudEvent,
    Evidence,
    LevelCertifiedEvent,
    Rejection,
    parse_event,
    parse_event_json,
    parse_inbound,
    parse_inbound_json,
    type_name,
)
from tests.unit.contracts.test_parsing import CONTRACT_EXAMPLE, _example, _raw

#: JSON values, among them the texts that are (or almost are) dates and times.
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "2025-06-12",
            "2025-02-30",
            "1899-01-01",
            "1718150400",
            "2025-06-12T09:30:00+09:00",
            "2025-06-12T09:30:00",
            "2025-06-12T00:00:00Z",
        ]
    ),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)


def _objects(doc: Any) -> list[dict[str, Any]]:
    """Every JSON object inside `doc`, `doc` first."""
    if isinstance(doc, dict):
        return [doc, *(o for v in doc.values() for o in _objects(v))]
    if isinstance(doc, list):
        return [o for v in doc for o in _objects(v)]
    return []


def _outcome(result: CloudEvent | Rejection) -> object:
    """The event, or the fields a Rejection names with its type and id."""
    if isinstance(result, Rejection):
        return sorted(e.field for e in result.errors), result.event_type, result.event_id
    return result


@pytest.mark.parametrize("cls", ALL_EVENT_CLASSES, ids=type_name)
def test_every_event_type_parses_from_its_decoded_json_as_from_its_bytes(
    cls: type[CloudEvent],
) -> None:
    """Given an event's bytes, when they are decoded first, the parse and the model's own
    validation give the same event as the bytes do."""
    raw = _example(cls, time="2025-06-12T09:30:00+09:00").to_json_bytes()
    assert parse_event_json(json.loads(raw)) == parse_event(raw)
    assert cls.model_validate(json.loads(raw)) == parse_event(raw)


@given(cls=st.sampled_from(ALL_EVENT_CLASSES), data=st.data())
def test_a_changed_field_is_accepted_or_refused_alike_from_bytes_and_decoded_json(
    cls: type[CloudEvent], data: st.DataObject
) -> None:
    """Given a valid event with any field of any object set to any JSON value, parse_event_json
    on the decoded JSON returns the event parse_event returns on the bytes, or a Rejection
    naming the same fields (pydantic words some problems differently for Python input)."""
    doc = json.loads(_example(cls).to_json_bytes())
    target = data.draw(st.sampled_from(_objects(doc)))
    target[data.draw(st.sampled_from(sorted(target)) | st.text(max_size=4))] = data.draw(
        _JSON_VALUES
    )
    raw = json.dumps(doc).encode()
    assert _outcome(parse_event_json(json.loads(raw))) == _outcome(parse_event(raw))


@pytest.mark.parametrize(
    "doc",
    [
        [1, 2],
        "a string",
        {**CONTRACT_EXAMPLE, "type": "dxtalent.lms.CourseFailed.v1"},
        json.loads(_raw(completed_on="2025-6-12")),
        json.loads(_raw(completed_on=20250612)),
        json.loads(_raw({"time": "2025-06-12T09:30:00"})),
    ],
)
def test_inbound_decoded_json_is_refused_with_the_reason_its_bytes_get(doc: Any) -> None:
    """Given decoded JSON that is not a valid inbound fact, parse_inbound_json gives the same
    Rejection as parse_inbound on its bytes: same reason, same field errors."""
    rejection = parse_inbound_json(doc)
    assert isinstance(rejection, Rejection)
    assert rejection == parse_inbound(json.dumps(doc).encode())


def test_models_built_in_python_still_take_date_objects_and_read_text_strictly() -> None:
    """A date object is taken as it is; ISO text is read as JSON reads it, so a date with a
    time or a single-digit month is refused as on the wire."""
    day = dt.date(2025, 6, 12)
    fields = {"skill": "dx-basics", "course_id": "DX-101", "event_id": "f1"}
    assert Evidence(completed_on=day, **fields) == Evidence.model_validate(
        {"completed_on": "2025-06-12", **fields}
    )
    for text in ("2025-06-12T00:00:00", "2025-6-12"):
        with pytest.raises(ValidationError, match="valid date in the format YYYY-MM-DD"):
            Evidence.model_validate({"completed_on": text, **fields})


async def test_a_faststream_handler_typed_with_the_event_class_receives_the_typed_event() -> None:
    """Given a FastStream handler whose parameter is LevelCertifiedEvent, when the event's bytes
    are published, the handler receives the event equal to what parse_event gives."""
    broker = NatsBroker()
    received: list[LevelCertifiedEvent] = []

    @broker.subscriber(LevelCertifiedEvent.nats_subject)
    async def handle(event: LevelCertifiedEvent) -> None:
        received.append(event)

    raw = _example(LevelCertifiedEvent, time="2025-06-12T09:30:00+09:00").to_json_bytes()
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(raw, LevelCertifiedEvent.nats_subject)
    assert received == [parse_event(raw)]
    assert received[0].data.certified_on == dt.date(2025, 6, 12)


async def test_a_faststream_handler_typed_with_the_event_class_refuses_what_the_wire_refuses() -> (
    None
):
    """Given the same handler, a LevelCertified whose time has no zone never reaches it: the
    model's validation error is raised, as parse_event would reject the bytes."""
    broker = NatsBroker()
    received: list[LevelCertifiedEvent] = []

    @broker.subscriber(LevelCertifiedEvent.nats_subject)
    async def handle(event: LevelCertifiedEvent) -> None:
        received.append(event)

    doc = json.loads(_example(LevelCertifiedEvent).to_json_bytes())
    doc["time"] = "2025-06-12T09:30:00"
    async with TestNatsBroker(broker) as test_broker:
        with pytest.raises(ValidationError, match="timezone"):
            await test_broker.publish(json.dumps(doc).encode(), LevelCertifiedEvent.nats_subject)
    assert received == []
    assert isinstance(parse_event(json.dumps(doc).encode()), Rejection)
