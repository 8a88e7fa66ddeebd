"""`BatchPublisher` writes its messages itself (decision 0280): the bytes nats-py's `publish`
would have sent, exactly, whichever way they reach the connection."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_infra import nats_fast
from dxtalent_infra.publisher import BatchPublisher, frame

HEADER_VALUE = st.text(st.characters(codec="utf-8"))


def _capturing_client() -> tuple[Client, list[bytes]]:
    """A client whose command buffer is a list: each command it would send, as it is."""
    nc = Client()
    sent: list[bytes] = []

    async def capture(cmd: bytes, priority: bool = False) -> None:
        sent.append(cmd)

    nc._send_command = capture  # type: ignore[method-assign]
    nc._flush_queue = None
    return nc, sent


def _nats_py_frame(subject: str, reply: str, headers: dict[str, str], payload: bytes) -> bytes:
    """What nats-py's `publish` hands its command buffer for the same message."""
    nc, sent = _capturing_client()
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
    written = frame("dx.events.enrollment.x", reply, event_id, payload, extra)
    assert written == expected


def test_without_the_fast_path_the_same_messages_are_published_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When nats-py is not the version `nats_fast` was written for, each message goes through
    nats-py's `publish`: the bytes buffered are the frames the fast path would have sent."""
    messages = [
        ("dx.events.enrollment.x", f"_INBOX.abc.1.{i}", f"id-{i}", b'{"n":%d}' % i, extra)
        for i, extra in enumerate([{}, {"traceparent": "00-ab-cd-01"}, {}])
    ]
    nc, sent = _capturing_client()
    nc._status = Client.CONNECTED
    publisher = BatchPublisher(nc, timeout=1)
    outgoing = [((s, i, p, x), reply) for s, reply, i, p, x in messages]
    monkeypatch.setattr(nats_fast, "_commands_fast", lambda: False)
    asyncio.run(publisher._send(outgoing))
    assert sent == [frame(*m) for m in messages]
    monkeypatch.undo()
    sent.clear()
    asyncio.run(publisher._send(outgoing))  # the fast path: one command
    assert sent == [b"".join(frame(*m) for m in messages)]
