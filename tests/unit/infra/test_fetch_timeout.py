"""The nats-py / FastStream timeout fix (`dxtalent_infra.fetch_timeout`)."""

from __future__ import annotations

import asyncio
import json
from typing import cast

import asyncpg
import nats.errors
import nats.js.errors
import pytest
from faststream.nats import NatsBroker
from nats.js.client import JetStreamContext

from dxtalent_infra import consumer, fetch_timeout
from dxtalent_infra.delivery import Delivery
from dxtalent_infra.topology import Topology


class _Subscription:
    """Stands in for nats-py's pull subscription at the moment it gives up on a fetch."""

    async def fetch(self, batch: int, timeout: float) -> list[object]:  # noqa: ASYNC109
        raise TimeoutError


async def test_a_builtin_timeout_of_fetch_becomes_the_nats_one_faststream_catches() -> None:
    """A fetch timing out with the builtin `TimeoutError` raises `nats.errors.TimeoutError`,
    the only one FastStream's batch loop catches (the builtin one killed the loop with the
    messages it had collected), and installing twice wraps once."""
    fetch_timeout.install(_Subscription)
    fetch_timeout.install(_Subscription)
    with pytest.raises(nats.errors.TimeoutError) as raised:
        await _Subscription().fetch(10, timeout=0.1)
    assert type(raised.value.__cause__) is TimeoutError


def test_the_consumer_installs_the_fix_on_nats_pull_subscriptions() -> None:
    """Importing the consumer module wraps nats-py's `PullSubscription.fetch`."""
    assert consumer.JetStreamConsumer is not None
    wrapped: object = JetStreamContext.PullSubscription.fetch
    assert getattr(wrapped, "_dxtalent_timeout_as_nats_error", False) is True


@pytest.mark.parametrize(("interval", "fill"), [(0.0, fetch_timeout.FILL_S), (0.02, 0.0)])
def test_a_consumer_that_spaces_its_batches_out_has_no_fill_window(
    interval: float, fill: float
) -> None:
    """The consumer registers its durable's standing request (twice its batch) with the fill
    window, or with none when `min_batch_interval` gathers its batches (decision 0345)."""
    durable = f"fill-{interval}"
    consumer.JetStreamConsumer(
        NatsBroker(),
        cast(asyncpg.Pool, None),  # not used before `run`
        "schema",
        Topology(),
        consumer.Subscription("DX_EVENTS", durable, _no_handler, "dx.deadletter.test"),
        options=consumer.ConsumerOptions(batch_size=50, min_batch_interval=interval),
    )
    assert fetch_timeout._BATCHING[(Topology().stream("DX_EVENTS"), durable)] == (100, fill)


async def _no_handler(conn: asyncpg.Connection, delivery: Delivery) -> None:
    raise AssertionError("never called")


class _Queue:
    """A pull subscription that is not one of the consumers' durables: nats-py's fetch."""

    def __init__(self, ready: int, consumer: str = "durable") -> None:
        self._stream, self._consumer = "STREAM", consumer
        self.ready = ready
        self.calls: list[tuple[int, float]] = []

    async def fetch(self, batch: int, timeout: float) -> list[int]:  # noqa: ASYNC109
        self.calls.append((batch, timeout))
        if self.ready == 0:
            raise TimeoutError
        taken = min(batch, self.ready)
        self.ready -= taken
        return list(range(taken))


async def test_other_pull_subscriptions_keep_nats_py_behaviour() -> None:
    """A pull subscription that is not a consumer's durable (a test helper, a tool) is asked
    once for the whole batch, as nats-py does it."""
    fetch_timeout.install(_Queue)
    other = _Queue(ready=3, consumer="someone-else")
    assert len(await other.fetch(500, timeout=0.1)) == 3
    assert other.calls == [(500, 0.1)]


class _Msg:
    def __init__(self, data: bytes = b"x", headers: dict[str, str] | None = None) -> None:
        self.data, self.headers = data, headers
        self.header = headers  # nats-py's alias, read by APIError.from_msg
        self.naked = False

    async def nak(self) -> None:
        self.naked = True


def _status(code: str, left: int | None = None) -> _Msg:
    headers = {"Status": code}
    if left is not None:
        headers["Nats-Pending-Messages"] = str(left)
    return _Msg(b"", headers)


class _Sub:
    """nats-py's subscription as the standing request uses it: a queue the client's read
    loop fills, and `next_msg`."""

    def __init__(self) -> None:
        self._pending_queue: asyncio.Queue[_Msg] = asyncio.Queue()
        self._pending_size = 0

    def push(self, *msgs: _Msg) -> None:
        for msg in msgs:
            self._pending_size += len(msg.data)
            self._pending_queue.put_nowait(msg)

    async def next_msg(self, timeout: float) -> _Msg:  # noqa: ASYNC109
        try:
            msg = await asyncio.wait_for(self._pending_queue.get(), timeout)
        except TimeoutError:
            raise nats.errors.TimeoutError from None
        self._pending_size -= len(msg.data)
        self._pending_queue.task_done()
        return msg


class _PullSubscription:
    """nats-py's pull subscription of a consumer's durable, recording its pull requests."""

    def __init__(self, durable: str = "standing") -> None:
        self._stream, self._consumer = "STREAM", durable
        self._nms, self._deliver = f"$JS.API.CONSUMER.MSG.NEXT.STREAM.{durable}", "_INBOX.x"
        self._sub = _Sub()
        self._nc = self
        self.stats = {"reconnects": 0}
        self.requests: list[dict[str, object]] = []

    async def publish(self, subject: str, payload: bytes, reply: str) -> None:
        assert (subject, reply) == (self._nms, self._deliver)
        self.requests.append(json.loads(payload))

    async def fetch(self, batch: int, timeout: float) -> list[_Msg]:  # noqa: ASYNC109
        raise AssertionError("replaced by install")


def _standing(size: int = 10, fill: float = fetch_timeout.FILL_S) -> _PullSubscription:
    fetch_timeout.install(_PullSubscription)
    sub = _PullSubscription(durable=f"standing-{size}-{fill}")
    fetch_timeout.batching("STREAM", sub._consumer, size, fill)
    return sub


_EXPIRES = int(fetch_timeout.EXPIRES_S * 1_000_000_000)


async def test_one_standing_request_serves_many_batches() -> None:
    """The first fetch asks once for `size` messages, lingering EXPIRES_S; the messages the
    server pushes for it make several batches, with no request of their own, until half of
    it is used; then it asks for what is missing."""
    sub = _standing(10)
    with pytest.raises(nats.errors.TimeoutError):  # idle: the request stands, nothing came
        await sub.fetch(5, timeout=0.01)
    assert sub.requests == [{"batch": 10, "expires": _EXPIRES}]
    sub._sub.push(_Msg(), _Msg())
    assert len(await sub.fetch(5, timeout=0.1)) == 2
    with pytest.raises(nats.errors.TimeoutError):  # short: the batch is handed over
        await sub.fetch(3, timeout=0.1)
    sub._sub.push(_Msg(), _Msg(), _Msg())
    assert len(await sub.fetch(5, timeout=0.1)) == 3
    assert sub.requests[1:] == [{"batch": 5, "expires": _EXPIRES}]  # half used: the 5 missing
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(2, timeout=0.1)
    sub._sub.push(_Msg(), _Msg(), _Msg(), _Msg())
    assert len(await sub.fetch(3, timeout=0.1)) == 3  # a full batch, the rest stays queued
    assert len(sub.requests) == 2  # 7 of 10 owed
    assert len(await sub.fetch(3, timeout=0.1)) == 1
    assert len(sub.requests) == 2  # 6 owed
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(2, timeout=0.1)
    sub._sub.push(_Msg())
    assert len(await sub.fetch(3, timeout=0.1)) == 1
    assert sub.requests[2:] == [{"batch": 5, "expires": _EXPIRES}]  # 5 owed: ask for 5


async def test_a_lone_message_waits_the_fill_window_at_most() -> None:
    """After the first message a batch takes what is queued, and when nothing was, what
    comes within FILL_S: a lone message is not held for the fetch's whole timeout."""
    sub = _standing(10)
    sub._sub.push(_Msg())
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert len(await sub.fetch(5, timeout=1.0)) == 1
    assert loop.time() - started < 0.5


@pytest.mark.parametrize(("fill", "taken"), [(0.5, 2), (0.0, 1)])
async def test_the_fill_window_is_the_subscriptions_own(fill: float, taken: int) -> None:
    """A batch takes what arrives within its subscription's fill window after the first
    message; with none (a consumer that gathers its batches by an interval) only what is
    queued, and a message 50 ms behind is left for the next batch."""
    sub = _standing(10, fill)
    sub._sub.push(_Msg())
    asyncio.get_running_loop().call_later(0.05, sub._sub.push, _Msg())
    assert len(await sub.fetch(5, timeout=1.0)) == taken


async def test_a_request_ended_by_the_server_is_renewed_at_once() -> None:
    """A 408 (expired) says how many of the request will not come: they are no longer
    counted, and the request is renewed while the fetch waits, without losing its time."""
    sub = _standing(10)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(5, timeout=0.01)
    sub._sub.push(_status("408", left=10), _Msg())
    assert len(await sub.fetch(5, timeout=0.1)) == 1
    assert sub.requests == [{"batch": 10, "expires": _EXPIRES}] * 2
    sub._sub.push(_status("100"))  # a heartbeat: nothing to do
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(5, timeout=0.01)
    assert len(sub.requests) == 2


async def test_an_expired_request_is_renewed_even_unheard() -> None:
    """A request whose end the client never heard of is over anyway once its expiry has
    passed, or once the connection was re-established: the next fetch asks again."""
    sub = _standing(10)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(5, timeout=0.01)
    state = sub._dxtalent_pull_state  # type: ignore[attr-defined]
    state.expires_at = 0.0
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(5, timeout=0.01)
    assert len(sub.requests) == 2
    sub.stats["reconnects"] += 1  # the server may have restarted: it forgot the request
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(5, timeout=0.01)
    assert len(sub.requests) == 3


async def test_other_statuses_raise_what_nats_py_raises() -> None:
    """A status that is not the request's end nor a heartbeat raises nats-py's APIError,
    and the request is asked again by the next fetch."""
    sub = _standing(10)
    sub._sub.push(_status("503"))
    with pytest.raises(nats.js.errors.APIError):
        await sub.fetch(5, timeout=0.1)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(5, timeout=0.01)
    assert len(sub.requests) == 2


async def test_a_top_up_takes_what_is_queued_without_asking() -> None:
    """`top_up` takes up to `room` queued messages and sends no request while the standing
    one is more than half there."""
    sub = _standing(10)
    sub._sub.push(_Msg())
    assert len(await sub.fetch(5, timeout=0.1)) == 1
    sub._sub.push(*[_Msg() for _ in range(3)])
    assert len(await fetch_timeout.top_up(sub, 2)) == 2
    assert len(await fetch_timeout.top_up(sub, 5)) == 1
    assert await fetch_timeout.top_up(sub, 5) == []
    assert await fetch_timeout.top_up(sub, 0) == []
    assert len(sub.requests) == 1
    assert await fetch_timeout.top_up(_PullSubscription("never-fetched"), 5) == []


async def test_release_naks_what_was_queued_and_asks_nothing_more() -> None:
    """Stopping: what the standing request queued and nobody took is nak'ed (delivered
    again at once, never acknowledged), and no request follows."""
    sub = _standing(10)
    sub._sub.push(_Msg())
    assert len(await sub.fetch(1, timeout=0.1)) == 1
    left = [_Msg(), _Msg()]
    sub._sub.push(*left, _status("100"))
    assert await fetch_timeout.release(sub) == 2
    assert all(msg.naked for msg in left)
    assert await fetch_timeout.top_up(sub, 5) == []
    assert len(sub.requests) == 1
