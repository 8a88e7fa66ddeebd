"""The nats-py / FastStream timeout fix (`dxtalent_infra.fetch_timeout`)."""

from __future__ import annotations

import json

import nats.errors
import pytest
from nats.js.client import JetStreamContext

from dxtalent_infra import consumer, fetch_timeout


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


class _Queue:
    """A pull subscription with `ready` messages waiting; records each fetch it is asked for."""

    def __init__(self, ready: int, consumer: str = "durable") -> None:
        self._stream, self._consumer = "STREAM", consumer
        fetch_timeout.batching("STREAM", "durable")
        self.ready = ready
        self.calls: list[tuple[int, float]] = []

    async def fetch(self, batch: int, timeout: float) -> list[int]:  # noqa: ASYNC109
        self.calls.append((batch, timeout))
        if self.ready == 0:
            raise TimeoutError
        taken = min(batch, self.ready)
        self.ready -= taken
        return list(range(taken))


async def test_a_batch_takes_its_first_message_then_only_what_is_already_there() -> None:
    """A batch fetch waits the caller's timeout for one message, then at most FILL_S for the
    rest: a lone message is not held back for the whole timeout, and a backlog still fills
    the batch."""
    fetch_timeout.install(_Queue)
    lone = _Queue(ready=1)
    assert await lone.fetch(500, timeout=0.1) == [0]
    assert lone.calls == [(1, 0.1), (499, fetch_timeout.FILL_S)]
    backlog = _Queue(ready=800)
    assert len(await backlog.fetch(500, timeout=0.1)) == 500
    assert backlog.calls == [(1, 0.1), (499, fetch_timeout.FILL_S)]


async def test_after_a_short_fetch_the_next_one_ends_at_once() -> None:
    """FastStream fetches again until its batch is full or its timeout is up; after a fetch
    that came back short, the next one times out at once (so the batch is handed over), and
    the one after that waits as usual."""
    fetch_timeout.install(_Queue)
    trickle = _Queue(ready=3)
    assert len(await trickle.fetch(500, timeout=0.1)) == 3
    with pytest.raises(nats.errors.TimeoutError):
        await trickle.fetch(497, timeout=0.09)
    assert len(trickle.calls) == 2  # the second fetch asked the server nothing
    trickle.ready = 2
    assert len(await trickle.fetch(500, timeout=0.1)) == 2


async def test_other_pull_subscriptions_keep_nats_py_behaviour() -> None:
    """A pull subscription that is not a consumer's durable (a test helper, a tool) is asked
    once for the whole batch, as nats-py does it."""
    fetch_timeout.install(_Queue)
    other = _Queue(ready=3, consumer="someone-else")
    assert len(await other.fetch(500, timeout=0.1)) == 3
    assert other.calls == [(500, 0.1)]


class _Msg:
    def __init__(self, status: str | None = None) -> None:
        self.headers = {"Status": status} if status else None


class _PullSubscription:
    """nats-py's pull subscription as `top_up` uses it: the server answers a no_wait request
    with the messages it has, then 404 when they were fewer than asked."""

    def __init__(self, ready: int) -> None:
        self._nms, self._deliver = "$JS.API.CONSUMER.MSG.NEXT.S.d", "_INBOX.x"
        self.ready = ready
        self.requests: list[dict[str, object]] = []
        self.queue: list[_Msg] = []
        self._nc = self
        self._sub = self

    async def publish(self, subject: str, payload: bytes, reply: str) -> None:
        request = json.loads(payload)
        self.requests.append(request)
        taken = min(int(request["batch"]), self.ready)
        self.ready -= taken
        self.queue += [_Msg() for _ in range(taken)]
        if taken < int(request["batch"]):
            self.queue.append(_Msg("404"))

    async def next_msg(self, timeout: float) -> _Msg:  # noqa: ASYNC109
        if not self.queue:
            raise TimeoutError
        return self.queue.pop(0)


async def test_a_top_up_takes_what_is_there_with_one_no_wait_request() -> None:
    """`top_up` asks once, without waiting on the server, for up to `room` messages, and
    leaves nothing of its request behind: a full answer ends the read, so does the 404."""
    sub = _PullSubscription(ready=7)
    assert len(await fetch_timeout.top_up(sub, 5)) == 5
    assert sub.requests == [{"batch": 5, "no_wait": True}]
    assert len(await fetch_timeout.top_up(sub, 5)) == 2
    assert sub.queue == []  # the 404 was read
    assert await fetch_timeout.top_up(sub, 5) == []
    assert await fetch_timeout.top_up(sub, 0) == []
    assert len(sub.requests) == 3
