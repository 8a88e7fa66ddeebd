"""Every NATS subject of the public contract that is not one event class's own subject.

Each event class names its subject (`nats_subject`); this module names the rest: the stream
wildcards, the dead-letter subject of each consuming service and the inbound subject for
messages whose type cannot be read, and the three streams by name. Code that publishes or subscribes uses these names, so the
AsyncAPI document (`schemagen`) and the test that checks it against the code read one list
(docs/contract.md, "Subjects").
"""

from __future__ import annotations

INBOUND_ALL = "dx.inbound.>"
"""Inbound facts from HR and LMS systems (stream DX_INBOUND)."""
EVENTS_ALL = "dx.events.>"
"""Domain events of every service (stream DX_EVENTS)."""
ENROLLMENT_EVENTS = "dx.events.enrollment.>"
"""The enrollment service's domain events."""
DEADLETTER_ALL = "dx.deadletter.>"
"""Dead letters of every service (stream DX_DEADLETTER)."""

INBOUND_UNRECOGNISED = "dx.inbound.unrecognised"
"""Where `dxtalent publish` sends a message whose CloudEvents type it cannot read or does not
know, so the enrollment service dead-letters it with a reason instead of the client dropping it."""

DEADLETTER_INBOUND = "dx.deadletter.inbound"
"""Inbound facts the enrollment service rejected."""
DEADLETTER_CERTIFICATION = "dx.deadletter.certification"
"""Enrollment events the certification service could not apply."""
DEADLETTER_REPORTING = "dx.deadletter.reporting"
"""Domain events the reporting service could not apply."""

DEADLETTER_BY_SERVICE: dict[str, str] = {
    "enrollment": DEADLETTER_INBOUND,
    "certification": DEADLETTER_CERTIFICATION,
    "reporting": DEADLETTER_REPORTING,
}
"""The dead-letter subject of each consuming service; each carries `MessageRejected` events."""

STREAM_INBOUND = "DX_INBOUND"
"""The stream that captures `INBOUND_ALL`."""
STREAM_EVENTS = "DX_EVENTS"
"""The stream that captures `EVENTS_ALL`: where a subscribing team binds its durable consumer."""
STREAM_DEADLETTER = "DX_DEADLETTER"
"""The stream that captures `DEADLETTER_ALL`."""
