"""Every v1 event type in one place, and the parsers that turn a message into a typed event.

`parse_event(raw)` takes the bytes, `parse_event_json(doc)` the decoded JSON (a dict, as a
FastStream handler receives it); both accept and refuse the same messages. Neither raises on
bad input: each returns a `Rejection` whose `reason` is one sentence a person can act on and
whose `errors` name each field and its problem.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.events import (
    CERTIFICATION_EVENT_CLASSES,
    ENROLLMENT_EVENT_CLASSES,
    CompletionVoidedRecordedEvent,
    CourseCompletedRecordedEvent,
    CourseEnrolledRecordedEvent,
    EmployeeLeftRecordedEvent,
    EmployeeUpdatedEvent,
    FieldError,
    ImprovementCaseRecordedEvent,
    LeaderNominatedRecordedEvent,
    LevelCertifiedEvent,
    LevelRevokedEvent,
    MessageRejectedEvent,
    SkillAcquiredEvent,
    SkillRevokedEvent,
)
from dxtalent_contracts.inbound import INBOUND_EVENT_CLASSES, InboundEvent

DomainEvent = (
    EmployeeUpdatedEvent
    | EmployeeLeftRecordedEvent
    | LeaderNominatedRecordedEvent
    | CourseEnrolledRecordedEvent
    | CourseCompletedRecordedEvent
    | CompletionVoidedRecordedEvent
    | ImprovementCaseRecordedEvent
    | SkillAcquiredEvent
    | SkillRevokedEvent
    | LevelCertifiedEvent
    | LevelRevokedEvent
)
AnyEvent = InboundEvent | DomainEvent | MessageRejectedEvent

ALL_EVENT_CLASSES: tuple[type[CloudEvent], ...] = (
    *INBOUND_EVENT_CLASSES,
    *ENROLLMENT_EVENT_CLASSES,
    *CERTIFICATION_EVENT_CLASSES,
    MessageRejectedEvent,
)


def type_name(cls: type[CloudEvent]) -> str:
    """The CloudEvents `type` string a class stands for."""
    return str(cls.model_fields["type"].annotation.__args__[0])  # type: ignore[union-attr]


E = TypeVar("E", bound=CloudEvent)


def build_event(
    cls: type[E],
    *,
    event_id: str,
    source: str,
    data: Any,
    subject: str | None = None,
    time: dt.datetime | None = None,
) -> E:
    """A validated event of `cls`, its `type` filled in from the class."""
    return cls.model_validate(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": type_name(cls),
            "subject": subject,
            "time": time,
            "data": data,
        }
    )


EVENT_CLASS_BY_TYPE: dict[str, type[CloudEvent]] = {type_name(c): c for c in ALL_EVENT_CLASSES}
SUBJECT_BY_TYPE: dict[str, str] = {type_name(c): c.nats_subject for c in ALL_EVENT_CLASSES}

_inbound_adapter: TypeAdapter[InboundEvent] = TypeAdapter(
    Annotated[InboundEvent, Field(discriminator="type")]
)
_any_adapter: TypeAdapter[AnyEvent] = TypeAdapter(Annotated[AnyEvent, Field(discriminator="type")])


@dataclass(frozen=True)
class Rejection:
    """Why raw bytes are not a valid event."""

    reason: str
    errors: list[FieldError] = field(default_factory=list)
    event_type: str | None = None
    event_id: str | None = None


def _field_errors(exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        # the discriminator's tag is not a field of the message; drop it from the path
        if len(loc) > 1 and loc[0] in EVENT_CLASS_BY_TYPE:
            loc = loc[1:]
        out.append(FieldError(field=".".join(loc) or "(message)", problem=err["msg"]))
    return out


def _describe(errors: list[FieldError], what: str) -> str:
    shown = "; ".join(f"{e.field}: {e.problem}" for e in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"{what} is not valid: {shown}{more}."


def _parse(doc: object, known: set[str], validate: Callable[[], Any]) -> Any:
    """Decoded JSON into a typed event of a `known` type by `validate()`, or why not."""
    if not isinstance(doc, dict):
        return Rejection("The message is JSON but not an object; a CloudEvent is a JSON object.")
    etype, eid = doc.get("type"), doc.get("id")
    etype = etype if isinstance(etype, str) else None
    eid = eid if isinstance(eid, str) else None
    if etype is None:
        return Rejection("The message has no CloudEvents 'type' attribute.", event_id=eid)
    if etype not in known:
        return Rejection(
            f"Unknown event type {etype!r}; expected one of: {', '.join(sorted(known))}.",
            event_type=etype,
            event_id=eid,
        )
    try:
        return validate()
    except ValidationError as exc:
        errors = _field_errors(exc)
        what = f"Event {etype!r} {eid!r}" if eid else f"Event {etype!r}"
        return Rejection(_describe(errors, what), errors, etype, eid)


def _parse_bytes(raw: bytes, adapter: TypeAdapter[Any], known: set[str]) -> Any:
    # the bytes themselves are validated, by pydantic's strict JSON mode: the wire's rules.
    # A valid event is read once (the consumers' hot path: decoding the JSON first as well
    # cost as much again); only a refused one is decoded, to say why. The adapter's core
    # validator is called directly, in a plain try: `TypeAdapter.validate_json` with no
    # options and `contextlib.suppress` cost a quarter as much again (decision 0275).
    try:
        return adapter.validator.validate_json(raw)
    except ValidationError:
        return _refused(raw, adapter, known)


def _refused(raw: bytes, adapter: TypeAdapter[Any], known: set[str]) -> Any:
    """Why `raw` is not an event of a `known` type (it failed `adapter` already)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # not JSON, or beyond what Python decodes
        return Rejection(f"The message is not valid JSON: {exc}.")
    return _parse(doc, known, lambda: adapter.validate_json(raw))


_INBOUND_TYPES = {type_name(c) for c in INBOUND_EVENT_CLASSES}
_ALL_TYPES = set(EVENT_CLASS_BY_TYPE)


def parse_inbound(raw: bytes) -> InboundEvent | Rejection:
    """Raw bytes from `dx.inbound.>` into a typed inbound fact, or why not."""
    result: InboundEvent | Rejection = _parse_bytes(raw, _inbound_adapter, _INBOUND_TYPES)
    return result


def parse_inbound_json(doc: object) -> InboundEvent | Rejection:
    """Decoded JSON (what `json.loads` returns) of an inbound fact into a typed one, or why not:
    accepts and refuses exactly what `parse_inbound` does for the bytes `doc` was decoded from."""
    validate = partial(_inbound_adapter.validate_python, doc)
    result: InboundEvent | Rejection = _parse(doc, _INBOUND_TYPES, validate)
    return result


def parse_event(raw: bytes) -> AnyEvent | Rejection:
    """Raw bytes of any v1 event (inbound, domain or dead letter) into a typed event, or why not."""
    result: AnyEvent | Rejection = _parse_bytes(raw, _any_adapter, _ALL_TYPES)
    return result


def parse_event_json(doc: object) -> AnyEvent | Rejection:
    """Decoded JSON of any v1 event (e.g. what FastStream hands a handler) into a typed event,
    or why not: accepts and refuses exactly what `parse_event` does for the bytes `doc` was
    decoded from."""
    result: AnyEvent | Rejection = _parse(
        doc, _ALL_TYPES, partial(_any_adapter.validate_python, doc)
    )
    return result
