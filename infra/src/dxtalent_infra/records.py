"""What the event store keeps: events to append and events as recorded."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NewEvent:
    """An event to append. `event_id` is also its CloudEvents id and its Nats-Msg-Id.

    `data` is the JSON object of the event's `data`; `event_type` the CloudEvents type
    (`dxtalent.certification.LevelCertified.v1`), which also names its schema version.
    """

    event_id: str
    event_type: str
    data: dict[str, Any]
    occurred_at: dt.datetime
    subject: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class RecordedEvent:
    """An event as the store holds it: its stream, version in that stream and global position."""

    stream_id: str
    stream_version: int
    position: int
    event_id: str
    event_type: str
    data: dict[str, Any]
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    subject: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
