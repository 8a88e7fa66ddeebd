"""`BatchPublisher`: JetStream publishing in batches, pipelined, every ack awaited.

The outbox relays publish through it (their events, in order, deleted only once every ack of
the batch came back), and so do the benchmarks' load generators. Per batch:

- every message asks for its JetStream ack on the publisher's own reply subscription
  (`<inbox>.<batch>.<index>`), subscribed once; the batch waits once for all of them, with a
  timeout (decision 0236: nats-py's `publish_async` made a semaphore slot, a future, a random
  token and a callback per message);
- the messages are written by `frame` (the bytes nats-py's `publish` would send, held to them
  by a property test) and handed to the connection as one command (`nats_fast.send_commands`:
  all buffered or none); when nats-py is not the version that path was written for, they
  are published one by one (decision 0280);
- each message carries `Nats-Msg-Id` (JetStream drops a copy within the stream's duplicate
  window) and `Content-Type`, plus any extra header (a trace's `traceparent`);
- each subject is checked once, as nats-py's `publish` checked it on every message.

A batch that fails (timeout, refusal, connection lost) raises; acks that arrive for it later
are dropped. Which messages of it were stored is then unknown: publish them again, under
the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import cast

import nats.errors
import nats.js.errors
from nats.aio.client import NO_RESPONDERS_STATUS, Client, _validate_subject
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from pydantic_core import from_json

from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_infra import nats_fast

#: One message: subject, id (`Nats-Msg-Id`), payload, extra headers (mostly none).
Outgoing = tuple[str, str, bytes, Mapping[str, str]]

#: What nats-py does to a header value before writing it: trimmed, CR and LF made spaces,
#: so a value can never end its line or inject a protocol command.
_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Every relayed message's header block around its `Nats-Msg-Id` value.
_HEADER_HEAD = "NATS/1.0\r\nNats-Msg-Id: "
_HEADER_TAIL = f"\r\nContent-Type: {CONTENT_TYPE}\r\n\r\n"
_HEADER_FIXED = len(_HEADER_HEAD.encode()) + len(_HEADER_TAIL.encode())


def frame(
    subject: str, reply: str, event_id: str, payload: bytes, extra: Mapping[str, str]
) -> bytes:
    """The `HPUB` protocol message nats-py's `publish` sends for `payload` with the headers
    `{"Nats-Msg-Id": event_id, "Content-Type": CONTENT_TYPE, **extra}` (`extra`: a trace's
    `traceparent`, mostly empty); a property test holds it to nats-py's own bytes.

    An id of printable ASCII (every id the services make) has as many bytes as characters
    and nothing to replace: the message is one formatted line, a third of the general way.
    """
    msg_id = event_id.strip()
    if not extra and msg_id.isascii() and msg_id.isprintable():
        n = _HEADER_FIXED + len(msg_id)
        line = f"HPUB {subject} {reply} {n} {n + len(payload)}\r\n{_HEADER_HEAD}{msg_id}"
        return b"".join(((line + _HEADER_TAIL).encode(), payload, b"\r\n"))
    headers = _header_block(event_id, extra)
    n = len(headers)
    line = f"HPUB {subject} {reply} {n} {n + len(payload)}\r\n"
    return b"".join((line.encode(), headers, payload, b"\r\n"))


def _header_block(event_id: str, extra: Mapping[str, str]) -> bytes:
    """The header block as nats-py encodes a headers dict, key by key."""
    lines = [_HEADER_HEAD, event_id.strip().translate(_HEADER_VALUE_NEWLINES), _HEADER_TAIL[:-2]]
    for k, v in extra.items():
        key = k.strip()
        if not key:
            continue
        if not _HEADER_KEY.fullmatch(key):
            raise nats.errors.BadHeaderError(key)
        lines.append(f"{key}: {v.strip().translate(_HEADER_VALUE_NEWLINES)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


class BatchPublisher:
    """Publishes batches of messages on one connection (module docstring)."""

    def __init__(self, nc: Client, *, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout
        self._prefix: str | None = None  # the reply subjects' prefix, once subscribed
        self._subscription: Subscription | None = None
        self._batches = 0
        self._awaiting: dict[str, _AwaitedAcks] = {}  # by batch number
        self._checked: set[str] = set()  # subjects nats-py would accept

    async def publish(self, messages: Sequence[Outgoing]) -> list[bool]:
        """Publish `messages` in order and wait for every ack; per message, whether JetStream
        had it already (a duplicate). Raises what `publish_async` raised: a refusal (no
        stream for a subject, an API error), a payload over the server's maximum (before
        anything is sent), `TimeoutError` when acks are missing after the timeout."""
        if not messages:
            return []
        nc = self._nc
        for subject, _, payload, _ in messages:
            if subject not in self._checked:
                _validate_subject(subject)
                self._checked.add(subject)
            if len(payload) > nc._max_payload:
                raise nats.errors.MaxPayloadError
        prefix = await self._reply_prefix()
        self._batches += 1
        batch = str(self._batches)
        self._awaiting[batch] = waiting = _AwaitedAcks(len(messages))
        try:
            await self._send([(m, f"{prefix}.{batch}.{i}") for i, m in enumerate(messages)])
            await asyncio.wait_for(waiting.done, self._timeout)
            return [_duplicate(cast(Msg, ack)) for ack in waiting.acks]
        finally:
            del self._awaiting[batch]

    async def _send(self, messages: Sequence[tuple[Outgoing, str]]) -> None:
        nc = self._nc
        data = b"".join([frame(s, reply, i, p, x) for (s, i, p, x), reply in messages])
        size = sum([len(m[2]) for m, _ in messages])
        if await nats_fast.send_commands(nc, data, len(messages), size):
            return
        for (subject, msg_id, payload, extra), reply in messages:
            headers = {"Nats-Msg-Id": msg_id, "Content-Type": CONTENT_TYPE, **extra}
            await nc.publish(subject, payload, reply=reply, headers=headers)

    async def _reply_prefix(self) -> str:
        """The reply subjects' prefix, subscribed once (nats-py subscribes again after a
        reconnect)."""
        if self._prefix is None:
            prefix = self._nc.new_inbox()
            self._subscription = await self._nc.subscribe(f"{prefix}.>", cb=self._on_ack)
            self._prefix = prefix
        return self._prefix

    async def _on_ack(self, msg: Msg) -> None:
        """Reply `<prefix>.<batch>.<index>`: file it; the last one of a batch wakes it.
        Replies of an abandoned batch are dropped."""
        batch, _, index = msg.subject[len(cast(str, self._prefix)) + 1 :].partition(".")
        waiting = self._awaiting.get(batch)
        if waiting is not None:
            waiting.file(int(index), msg)

    async def close(self) -> None:
        """Stop listening for acks (a batch still waiting times out)."""
        subscription, self._subscription, self._prefix = self._subscription, None, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


class _AwaitedAcks:
    """The acks of one batch, filed by index; `done` once every one arrived."""

    __slots__ = ("acks", "done", "missing")

    def __init__(self, n: int) -> None:
        self.acks: list[Msg | None] = [None] * n
        self.missing = n
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def file(self, index: int, ack: Msg) -> None:
        if self.acks[index] is None:
            self.acks[index] = ack
            self.missing -= 1
            if self.missing == 0 and not self.done.done():
                self.done.set_result(None)


def _duplicate(ack: Msg) -> bool:
    """Whether JetStream's ack says it had the message already; raises what `publish_async`
    raised for a refusal (no stream for the subject, an API error)."""
    if ack.headers and ack.headers.get(api.Header.STATUS) == NO_RESPONDERS_STATUS:
        raise nats.js.errors.NoStreamResponseError
    resp = from_json(ack.data)  # json.loads's result for an ack, in a third of the time
    if "error" in resp:
        raise nats.js.errors.APIError.from_error(resp["error"])
    return bool(resp.get("duplicate", False))
