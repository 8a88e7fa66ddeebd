"""The relay's CloudEvent payload (decision 0280): the same bytes as before, exactly; and an
event handed over in memory (decision 0320) gives the same document as its stored row."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_infra.outbox import cloudevent_bytes, handed_over_cloudevent_bytes
from dxtalent_infra.records import NewEvent

# what PostgreSQL's text can hold: any character but NUL and lone surrogates
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))


def _before(row: dict[str, Any], source: str) -> bytes:
    """`cloudevent_bytes` as it was: the attributes encoded by `json.dumps`."""
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": row["event_id"],
        "source": source,
        "type": row["event_type"],
    }
    if row["subject"] is not None:
        doc["subject"] = row["subject"]
    doc["time"] = row["occurred_at"].isoformat()
    doc["datacontenttype"] = "application/json"
    if row["causation_id"] is not None:
        doc["causationid"] = row["causation_id"]
    if row["correlation_id"] is not None:
        doc["correlationid"] = row["correlation_id"]
    head = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return f'{head[:-1]},"data":{row["data"]}}}'.encode()


@settings(max_examples=300)
@given(
    event_id=TEXT,
    event_type=TEXT,
    source=TEXT,
    subject=st.none() | TEXT,
    causation=st.none() | TEXT,
    correlation=st.none() | TEXT,
    occurred=st.datetimes(timezones=st.timezones()),
    data=st.dictionaries(TEXT, TEXT | st.integers(), max_size=3),
)
def test_cloudevent_bytes_are_what_json_dumps_wrote(
    event_id: str,
    event_type: str,
    source: str,
    subject: str | None,
    causation: str | None,
    correlation: str | None,
    occurred: dt.datetime,
    data: dict[str, Any],
) -> None:
    """Control characters, quotes, backslashes and non-ASCII text included."""
    row = {
        "event_id": event_id,
        "event_type": event_type,
        "subject": subject,
        "occurred_at": occurred,
        "causation_id": causation,
        "correlation_id": correlation,
        "data": json.dumps(data, ensure_ascii=False),
    }
    assert cloudevent_bytes(row, source) == _before(row, source)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(
    event_id=TEXT,
    event_type=TEXT,
    source=TEXT,
    subject=st.none() | TEXT,
    causation=st.none() | TEXT,
    correlation=st.none() | TEXT,
    occurred=st.datetimes(
        min_value=dt.datetime(1900, 1, 2), timezones=st.timezones(), allow_imaginary=False
    ),
    data=st.dictionaries(TEXT, TEXT | st.integers() | st.none() | st.lists(TEXT), max_size=4),
)
def test_a_handed_over_event_is_the_document_of_its_stored_row(
    event_id: str,
    event_type: str,
    source: str,
    subject: str | None,
    causation: str | None,
    correlation: str | None,
    occurred: dt.datetime,
    data: dict[str, Any],
) -> None:
    """The attributes byte for byte as the stored row gives them (PostgreSQL returns
    `occurred_at` in UTC); `data` the same JSON value (its text is the appender's)."""
    event = NewEvent(
        event_id=event_id,
        event_type=event_type,
        data=data,
        occurred_at=occurred,
        subject=subject,
        causation_id=causation,
        correlation_id=correlation,
    )
    row = {
        "event_id": event_id,
        "event_type": event_type,
        "subject": subject,
        "occurred_at": occurred.astimezone(dt.UTC),
        "causation_id": causation,
        "correlation_id": correlation,
        "data": json.dumps(data, ensure_ascii=False),
    }
    handed = handed_over_cloudevent_bytes(event, source)
    stored = cloudevent_bytes(row, source)  # type: ignore[arg-type]
    head = stored[: stored.index(b',"data":')]
    assert handed.startswith(head + b',"data":')
    assert json.loads(handed) == json.loads(stored)
