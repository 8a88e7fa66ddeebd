"""The relay writes its messages itself (decision 0280): the same bytes as before, exactly."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_infra import nats_fast, outbox
from dxtalent_infra.outbox import cloudevent_bytes, relay_frame

# what PostgreSQL's text can hold: any character but NUL and lone surrogates
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
HEADER_VALUE = st.text(st.characters(codec="utf-8"))


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


def _nats_py_frame(subject: str, reply: str, headers: dict[str, str], payload: bytes) -> bytes:
    """What nats-py's `publish` hands its command buffer for the same message."""
    nc = Client()
    sent: list[bytes] = []

    async def capture(cmd: bytes, priority: bool = False) -> None:
        sent.append(cmd)

    nc._send_command = capture  # type: ignore[method-assign]
    nc._flush_queue = None
    asyncio.run(nc._send_publish(subject, reply, payload, len(payload), headers))
    assert len(sent) == 1
    return sent[0]


@settings(max_examples=300, deadline=None)
@given(
    event_id=HEADER_VALUE | st.uuids().map(str) | st.from_regex(r"\A[ -~]{1,60}\Z"),
    traceparent=st.none() | HEADER_VALUE,
    payload=st.binary(),
    index=st.integers(0, 10_000),
)
def test_a_frame_is_what_nats_py_publish_sent(
    event_id: str, traceparent: str | None, payload: bytes, index: int
) -> None:
    """Header values trimmed, CR and LF made spaces, the header lengths counted in bytes."""
    extra = {} if traceparent is None else {"traceparent": traceparent}
    headers = {"Nats-Msg-Id": event_id, "Content-Type": CONTENT_TYPE, **extra}
    reply = f"_INBOX.abc.1.{index}"
    expected = _nats_py_frame("dx.events.enrollment.x", reply, headers, payload)
    frame = relay_frame("dx.events.enrollment.x", reply, event_id, payload, extra)
    assert frame == expected


def test_without_the_fast_path_the_relay_publishes_the_same_messages_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When nats-py is not the version `nats_fast` was written for, each message goes through
    nats-py's `publish`: the bytes buffered are the frames the fast path would have sent."""
    messages = [
        ("dx.events.enrollment.x", f"_INBOX.abc.1.{i}", f"id-{i}", b'{"n":%d}' % i, extra)
        for i, extra in enumerate([{}, {"traceparent": "00-ab-cd-01"}, {}])
    ]
    nc = Client()
    sent: list[bytes] = []

    async def capture(cmd: bytes, priority: bool = False) -> None:
        sent.append(cmd)

    nc._send_command = capture  # type: ignore[method-assign]
    nc._flush_queue = None
    nc._status = Client.CONNECTED
    monkeypatch.setattr(nats_fast, "_commands_fast", lambda: False)
    asyncio.run(outbox._send(nc, messages))
    assert sent == [relay_frame(*m) for m in messages]
    monkeypatch.undo()
    sent.clear()
    asyncio.run(outbox._send(nc, messages))  # the fast path: one command
    assert sent == [b"".join(relay_frame(*m) for m in messages)]
