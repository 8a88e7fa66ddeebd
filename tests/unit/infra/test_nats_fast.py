"""The nats-py fast paths of the consumer edge (`dxtalent_infra.nats_fast`): each does what
nats-py's own code does, and each is checked against the nats-py source it was written for.

When `test_nats_py_is_the_version_the_fast_paths_were_written_for` fails, nats-py changed:
the fast paths are then off (nats-py's own code runs). Read the new source of the functions
named, adapt the fast path if needed, and update `nats_fast.FINGERPRINTS`."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.protocol.command import pub_cmd

from dxtalent_infra import consumer, nats_fast

ORIGINAL_HEADER_LINES = nats_fast._SOURCES["Client._parse_header_lines"]
REPLY = "$JS.ACK.DX_INBOUND.enrollment.1.{seq}.{seq}.1764536000123456789.0"


def test_nats_py_is_the_version_the_fast_paths_were_written_for() -> None:
    assert consumer.JetStreamConsumer is not None  # importing the consumer installs them
    assert nats_fast.changed() == []
    assert nats_fast.install() == {"next_msg": True, "commands": True, "header_lines": True}


# --- header blocks ---------------------------------------------------------------------------

_HEADERISH = st.binary(max_size=60) | st.lists(
    st.sampled_from(
        [
            b"Nats-Msg-Id",
            b":",
            b": ",
            b" ",
            b"\t",
            b"\r\n",
            b"\r",
            b"\n",
            b"\x1c",
            b"\x0b",
            b"a b",
            b"\xc3\xa9",
            b"\xff",
            b"v",
            b"Status",
            b"\x00",
            b"::",
        ]
    ),
    max_size=14,
).map(b"".join)


@given(_HEADERISH)
def test_header_blocks_read_as_nats_py_reads_them(raw: bytes) -> None:
    assert nats_fast.parse_header_lines(raw) == ORIGINAL_HEADER_LINES(raw)


def test_a_real_header_block() -> None:
    raw = b"Nats-Msg-Id: f-1\r\nContent-Type: application/cloudevents+json\r\n\r\n"
    assert nats_fast.parse_header_lines(raw) == ORIGINAL_HEADER_LINES(raw)
    assert Client._parse_header_lines(raw) == {
        "Nats-Msg-Id": "f-1",
        "Content-Type": "application/cloudevents+json",
    }


# --- acknowledgements --------------------------------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()

    def writelines(self, buffers: list[bytes]) -> None:
        for b in buffers:
            self.written += b

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        return None


def _client() -> Client:
    """A client that believes it is connected and writes into `_transport.written`."""
    client = Client()
    client._status = Client.CONNECTED
    client._transport = _Transport()  # type: ignore[assignment]
    client._flush_queue = asyncio.Queue(maxsize=1024)
    client._max_pending_size = 2 * 1024 * 1024
    return client


def _msgs(client: Client, n: int) -> list[Msg]:
    return [
        Msg(client, subject="dx.inbound.completion", reply=REPLY.format(seq=i + 1), data=b"{}")
        for i in range(n)
    ]


def test_the_batch_command_is_what_each_ack_would_send() -> None:
    replies = [REPLY.format(seq=i) for i in range(1, 4)]
    assert nats_fast.ack_command(replies) == b"".join(pub_cmd(r, "", b"") for r in replies)


async def test_acknowledging_a_batch_queues_what_ack_by_ack_queues() -> None:
    """The same bytes, pending for the flusher, which is kicked once, and the same stats."""
    one_by_one, at_once = _client(), _client()
    flusher = asyncio.create_task(asyncio.sleep(3600))  # a flusher that has not run yet
    one_by_one._flusher_task = at_once._flusher_task = flusher
    try:
        for msg in _msgs(one_by_one, 5):
            await msg.ack()
        batch = _msgs(at_once, 5)
        await nats_fast.ack_all(batch)
    finally:
        flusher.cancel()
    assert b"".join(at_once._pending) == b"".join(one_by_one._pending)
    assert at_once._pending_data_size == one_by_one._pending_data_size
    assert at_once.stats == one_by_one.stats
    for client in (at_once, one_by_one):  # the flusher kicked once
        assert client._flush_queue is not None
        assert client._flush_queue.qsize() == 1
    assert all(msg._ackd for msg in batch)
    with pytest.raises(nats.errors.MsgAlreadyAckdError):
        await nats_fast.ack_all(batch)  # as `msg.ack()` refuses a second acknowledgement
    twice = _msgs(_client(), 1)
    with pytest.raises(nats.errors.MsgAlreadyAckdError):
        await nats_fast.ack_all([twice[0], twice[0]])


async def test_without_a_flusher_the_batch_is_written_at_once_as_each_ack_would_be() -> None:
    one_by_one, at_once = _client(), _client()
    for msg in _msgs(one_by_one, 3):
        await msg.ack()
    await nats_fast.ack_all(_msgs(at_once, 3))
    written = at_once._transport.written  # type: ignore[union-attr]
    assert written == one_by_one._transport.written  # type: ignore[union-attr]
    assert written.count(b"PUB ") == 3


async def test_anything_else_is_acknowledged_message_by_message() -> None:
    class Fake:
        def __init__(self) -> None:
            self.acked = False

        async def ack(self) -> None:
            self.acked = True

    fakes: list[Any] = [Fake(), Fake()]
    await nats_fast.ack_all(fakes)
    assert all(f.acked for f in fakes)
    closed = _client()
    closed._status = Client.CLOSED
    with pytest.raises(nats.errors.ConnectionClosedError):
        await nats_fast.ack_all(_msgs(closed, 2))  # what `msg.ack()` raises
    await nats_fast.ack_all([])


# --- next_msg ----------------------------------------------------------------------------------


class _Conn:
    is_closed = False


def _subscription(n: int) -> Subscription:
    sub = Subscription(_Conn(), 1, "inbox")
    for i in range(n):
        msg = Msg(None, subject="s", reply=REPLY.format(seq=i + 1), data=b"x" * (i + 1))  # type: ignore[arg-type]
        sub._pending_queue.put_nowait(msg)
        sub._pending_size += len(msg.data)
    return sub


async def test_queued_messages_come_out_in_order_with_nats_py_bookkeeping() -> None:
    sub = _subscription(3)
    got = [await sub.next_msg(timeout=0.5) for _ in range(3)]
    assert [m.data for m in got] == [b"x", b"xx", b"xxx"]
    assert sub._pending_size == 0
    assert sub._pending_queue._unfinished_tasks == 0  # type: ignore[attr-defined]
    assert sub._pending_next_msgs_calls == {}


async def test_an_empty_queue_waits_and_times_out_as_nats_py_does() -> None:
    sub = _subscription(0)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.01)
    later = _subscription(0)
    late = Msg(None, data=b"y")  # type: ignore[arg-type]
    asyncio.get_running_loop().call_later(0.01, later._pending_queue.put_nowait, late)
    assert (await later.next_msg(timeout=1)).data == b"y"


async def test_a_call_that_cannot_wait_is_nats_py_s_even_with_a_message_queued() -> None:
    sub = _subscription(1)
    with pytest.raises(nats.errors.TimeoutError):  # wait_for(timeout=0) refuses at once
        await sub.next_msg(timeout=0)
    assert sub._pending_queue.qsize() == 1
