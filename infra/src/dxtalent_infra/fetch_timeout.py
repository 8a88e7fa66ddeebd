"""How the consumers' batch pull fetches behave, installed once by `consumer` on nats-py's
`PullSubscription.fetch` (FastStream's batch pull loop calls it).

Fixes and changes between nats-py 2.16 and FastStream 0.7.8:

1. **Timeouts.** nats-py raises the builtin `TimeoutError` when a lingering pull request ends
   empty, while FastStream's batch loop catches only `nats.errors.TimeoutError` (a subclass):
   the loop's task then dies with the messages it had already collected, FastStream restarts
   it, and those messages, delivered but neither applied nor acknowledged, stall until
   `ack_wait` (30 s) brings them back. Measured: under two parallel test workers, a third of
   the service tests waited those 30 s. The timeout is re-raised as `nats.errors.TimeoutError`.
2. **One standing pull request, batches formed here** (the consumers' own durables only,
   see `batching`; decision 0315). A pull request and its answer cost nats-server 70–170 µs
   of CPU each, against 6–7 µs per message delivered and acknowledged (0305), and a batch
   fetched with requests of its own paid two or three of them and one or two 404s. Instead
   each subscription keeps one request standing: `size` messages (twice the consumer's
   batch), lingering `EXPIRES_S`, renewed for what is missing when half of it has been
   taken or when it ended (a 408/409 says how many of it will not come; past its expiry it
   is over whatever was heard). Under a steady load the server pushes each message as it
   is stored; a fetch takes them from the subscription's queue: the first one waited for as
   long as the caller allows, then what is queued, and when nothing more was, what comes
   within `FILL_S` (a consumer that spaces its batches out, `min_batch_interval`, takes
   only what is queued: its interval gathers the rest, decision 0345). After a fetch that
   came back short, the next one ends at once, which
   makes FastStream's loop hand over the batch it has (a lone message is not held for the
   loop's whole timeout: median 101 ms instead of 17 at each hop, 0110). What is queued
   counts as owed until taken, so messages delivered and not yet applied are at most the
   request's size beyond the batches fetched (below `max_ack_pending`, and applied within
   two batches, far below `ack_wait`).
3. **A batch in waiting tops itself up** (`top_up`, called by the consumer). The consumer
   fetches the next batch while one is applied, so under load that fetch takes what little
   had arrived by then and waits for the apply; meanwhile more arrives. Once the previous
   batch is done, the waiting one takes what was queued in the meantime, asking the server
   nothing (decision 0202 asked with a `no_wait` request).
4. **Stopping** (`release`, called by the consumer after FastStream unsubscribed): what the
   standing request queued and nobody took is nak'ed, so the server delivers it again at
   once (to another replica, or after a restart) instead of after `ack_wait`; nothing of it
   is acknowledged. Nak'ing before the unsubscribe would hand it back to the same request.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from typing import Any, cast

import nats.errors
import nats.js.errors
from nats.js.client import JetStreamContext

_MARK = "_dxtalent_timeout_as_nats_error"
_SHORT = "_dxtalent_last_fetch_short"
_STATE = "_dxtalent_pull_state"

#: How long a batch that has its first message waits for more to arrive (seconds), by
#: default (`batching`).
FILL_S = 0.005

#: How long the consumers' standing pull request lives (seconds): renewed when half of it
#: is used, or when it expired (an idle consumer asks again at this pace).
EXPIRES_S = 5.0

#: The (stream, durable) pairs whose fetches behave as in 2. (the services' consumers), with
#: how many messages their standing request asks for and their fill window (seconds); any
#: other pull subscription in the process keeps nats-py's behaviour, with fix 1 only.
_BATCHING: dict[tuple[object, object], tuple[int, float]] = {}


def batching(stream: str, durable: str, size: int = 1000, fill: float = FILL_S) -> None:
    """Give the pull subscriptions of `durable` on `stream` the batch behaviour of 2., with
    a standing request for `size` messages (the consumer passes twice its batch size) and a
    batch waiting up to `fill` seconds for more after its first message (0: it takes what is
    queued; a consumer that spaces its batches out gathers them by its interval instead)."""
    _BATCHING[(stream, durable)] = (max(1, size), max(0.0, fill))


class _Pull:
    """What one subscription's standing pull requests still owe: `owed` messages asked for
    and not yet taken from the subscription's queue (queued ones included), until
    `expires_at` (monotonic) at the latest."""

    __slots__ = ("expires_at", "owed", "reconnects", "released", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.owed = 0
        self.expires_at = 0.0
        self.released = False
        self.reconnects = 0


def _state(subscription: Any, size: int) -> _Pull:
    state = getattr(subscription, _STATE, None)
    if state is None:
        state = _Pull(size)
        setattr(subscription, _STATE, state)
    return cast(_Pull, state)


async def _ask(subscription: Any, state: _Pull) -> None:
    """Renew the standing request when half of it is used or it expired: one pull request
    for what is missing to `size`, lingering `EXPIRES_S` (no `no_wait`, so no 404; the
    server pushes each message as it is stored)."""
    if state.released:
        return
    now = time.monotonic()
    reconnects = subscription._nc.stats.get("reconnects", 0)
    if now >= state.expires_at or reconnects != state.reconnects:
        # every earlier request is over, whatever was heard of it (a server restarted
        # since has forgotten it)
        state.owed, state.reconnects = 0, reconnects
    if state.owed > state.size // 2:
        return
    room = state.size - state.owed
    request = {"batch": room, "expires": int(EXPIRES_S * 1_000_000_000)}
    await subscription._nc.publish(
        subscription._nms, json.dumps(request).encode(), subscription._deliver
    )
    state.owed += room
    state.expires_at = now + EXPIRES_S - 0.05


def _status(state: _Pull, msg: Any) -> Exception | None:
    """A status message of the standing request: 408 (expired) and 409 (ended by the
    server) say how many of it will not come; a heartbeat changes nothing; anything else
    ends the request and gives the error nats-py's fetch raises for it."""
    status = msg.headers.get("Status")
    if status == "100":
        return None
    if status in ("408", "409", "404"):
        left = msg.headers.get("Nats-Pending-Messages")
        if left is not None and left.isdigit():
            state.owed = max(0, state.owed - int(left))
        else:  # the request is over and does not say how much: ask again
            state.owed = 0
            state.expires_at = 0.0
        return None
    state.owed, state.expires_at = 0, 0.0
    try:
        nats.js.errors.APIError.from_msg(msg)  # raises the error for this status
    except Exception as exc:
        return exc


def _take(subscription: Any, state: _Pull, limit: int, got: list[Any]) -> Exception | None:
    """Move queued messages into `got`, up to `limit` in all, without waiting (nats-py's
    bookkeeping of a queued message, as its `next_msg` does); the error of a status that
    ended the request, if one came (the messages before it are kept)."""
    sub = subscription._sub
    queue = sub._pending_queue
    error = None
    while len(got) < limit and not queue.empty():
        msg = queue.get_nowait()
        sub._pending_size -= len(msg.data)
        queue.task_done()
        if msg.headers and "Status" in msg.headers:
            error = _status(state, msg) or error
            continue
        state.owed = max(0, state.owed - 1)
        got.append(msg)
    return error


async def _wait_one(
    subscription: Any,
    state: _Pull,
    timeout: float,  # noqa: ASYNC109 (a deadline, not a cancellation scope)
    got: list[Any],
) -> Exception | None:
    """Wait up to `timeout` for one message to be queued, then take it into `got`; the
    error of a status that ended the request, if one came instead."""
    deadline = time.monotonic() + timeout
    sub = subscription._sub
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            msg = await sub.next_msg(timeout=remaining)
        except TimeoutError:  # nats.errors.TimeoutError too
            return None
        if msg.headers and "Status" in msg.headers:
            error = _status(state, msg)
            if error is not None:
                return error
            await _ask(subscription, state)  # a 408 ends the request: renew it at once
            continue
        state.owed = max(0, state.owed - 1)
        got.append(msg)
        return None


async def _standing_fetch(
    subscription: Any,
    size: int,
    fill: float,
    batch: int,
    timeout: float | None,  # noqa: ASYNC109 (nats-py's signature)
) -> list[Any]:
    """A batch fetch from the standing request (2.): the first message, waited for up to
    `timeout`, then what is queued and what arrives within `fill` of it, up to `batch`.
    A status that ended the request with an error raises it when nothing was taken."""
    state = _state(subscription, size)
    await _ask(subscription, state)
    got: list[Any] = []
    error = _take(subscription, state, batch, got)
    if not got and error is None:
        error = await _wait_one(subscription, state, 5.0 if timeout is None else timeout, got)
    if not got:
        if error is not None:
            raise error
        await _ask(subscription, state)
        raise nats.errors.TimeoutError
    fill_until = time.monotonic() + fill
    while error is None:
        error = _take(subscription, state, batch, got)
        remaining = fill_until - time.monotonic()
        if len(got) >= batch or remaining <= 0 or error is not None:
            break
        error = await _wait_one(subscription, state, remaining, got)
    await _ask(subscription, state)
    return got


def install(cls: Any = JetStreamContext.PullSubscription) -> None:
    """Wrap `cls.fetch` (nats-py's pull subscription's) as the module says (idempotent)."""
    if getattr(cls.fetch, _MARK, False):
        return
    original = cls.fetch

    async def fetch_once(self: Any, batch: int, timeout: float | None, **kwargs: Any) -> Any:  # noqa: ASYNC109 (nats-py's signature)
        try:
            return await original(self, batch, timeout, **kwargs)
        except nats.errors.TimeoutError:
            raise
        except TimeoutError as exc:
            raise nats.errors.TimeoutError from exc

    @functools.wraps(original)
    async def fetch(
        self: Any,
        batch: int = 1,
        timeout: float | None = 5,  # noqa: ASYNC109 (nats-py's signature)
        **kwargs: Any,
    ) -> Any:
        how = _BATCHING.get((getattr(self, "_stream", None), getattr(self, "_consumer", None)))
        if how is None:
            return await fetch_once(self, batch, timeout, **kwargs)
        if getattr(self, _SHORT, False):  # the batch so far is all there is: hand it over
            setattr(self, _SHORT, False)
            raise nats.errors.TimeoutError
        got = await _standing_fetch(self, *how, batch, timeout)
        setattr(self, _SHORT, len(got) < batch)
        return got

    setattr(fetch, _MARK, True)
    cls.fetch = fetch


async def top_up(subscription: Any, room: int) -> list[Any]:
    """Up to `room` messages already queued for pull subscription `subscription` by its
    standing request (3.), without asking the server anything; [] when none."""
    if room < 1:
        return []
    state = getattr(subscription, _STATE, None)
    if state is None:
        return []
    got: list[Any] = []
    _take(subscription, state, room, got)
    await _ask(subscription, state)
    return got


async def release(subscription: Any) -> int:
    """Stopping: nak what the standing request queued and nobody took, so that the server
    delivers it again at once rather than after `ack_wait`; how many were nak'ed."""
    state = getattr(subscription, _STATE, None)
    if state is None or subscription is None:
        return 0
    got: list[Any] = []
    with contextlib.suppress(Exception):
        _take(subscription, state, 1 << 30, got)
    for msg in got:
        with contextlib.suppress(Exception):
            await msg.nak()
    state.released = True  # ask nothing more
    return len(got)
