"""The nats-py internals the consumer edge relies on for speed, in one place (decision 0275).

Every consumer message passes here three or four times per fact (enrollment, certification,
reporting), so three per-message costs of nats-py 2.x are avoided:

1. **Reading a queued message** (`Subscription.next_msg`). A pull fetch takes each message
   of its batch with `next_msg`, which makes a uuid, a task and an `asyncio.wait_for` (a
   second task) per message even when the message is already in the subscription's queue:
   about 14 µs of CPU per message. When one is queued (and the call could not time out at
   once), the fast path takes it as `next_msg` would, with the same bookkeeping; otherwise
   nats-py's own `next_msg` runs.
2. **Sending a batch of messages** (`send_commands`). `Client.publish` checks, formats and
   appends one command per message; for a batch whose protocol bytes the caller wrote
   itself, the checks are made once and the bytes appended as one command, the flusher
   kicked once, as `publish` does. Used for a batch's acknowledgements (`ack_all`: what
   `msg.ack()` sends for each) and for the messages of `publisher.BatchPublisher` (`frame`).
3. **Header blocks** (`Client._parse_header_lines`, every JetStream message carries
   `Nats-Msg-Id`): the same result with fewer steps per line.

Each relies on nats-py code we do not own, so each is enabled only when the source of the
nats-py functions it stands in for or calls is the one it was written against
(`FINGERPRINTS`); otherwise nats-py's own path runs and a warning is logged once. The unit
tests fail when a fingerprint no longer matches (a nats-py upgrade): review the new source,
then update the fingerprint. The same test guards `fetch_timeout`'s standing pull request
(decision 0315), which publishes on a pull subscription's request subject and takes messages
from its subscription's queue: the attributes the two constructors below set.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from nats import errors as nats_errors
from nats.aio import client as nats_client
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext

log = structlog.get_logger(__name__)

_MARK = "_dxtalent_fast"

#: sha256 (first 16 hex digits) of the source of each nats-py function the fast paths stand
#: in for or call, as of nats-py 2.16 (see the module docstring).
FINGERPRINTS: dict[str, str] = {
    "Subscription.next_msg": "6abe56b0718cc68e",
    "Msg.ack": "75eaf23bc02186ae",
    "Msg._check_reply": "d7f9b51817a99ddb",
    "Client.publish": "97d776c391adfd8b",
    "Client._send_publish": "300b534f8eabee74",
    "Client._send_command": "ed57e8e86389cf94",
    "Client._flush_pending": "317c8d7ef54b90b7",
    "Client._parse_header_lines": "049cf69148e0bb4f",
    # `fetch_timeout` (0315): `_nc`, `_nms`, `_deliver`, `_sub`; `_pending_queue`, `_pending_size`
    "PullSubscription.__init__": "31004f41d6e52719",
    "Subscription.__init__": "2802b4167b601689",
}

_SOURCES: dict[str, Callable[..., Any]] = {
    "Subscription.next_msg": Subscription.next_msg,
    "Msg.ack": Msg.ack,
    "Msg._check_reply": Msg._check_reply,
    "Client.publish": Client.publish,
    "Client._send_publish": Client._send_publish,
    "Client._send_command": Client._send_command,
    "Client._flush_pending": Client._flush_pending,
    "Client._parse_header_lines": Client._parse_header_lines,
    "PullSubscription.__init__": JetStreamContext.PullSubscription.__init__,
    "Subscription.__init__": Subscription.__init__,
}


def fingerprint(function: Callable[..., Any]) -> str:
    """The first 16 hex digits of the sha256 of `function`'s source ("" without source)."""
    try:
        source = inspect.getsource(inspect.unwrap(function))
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def changed() -> list[str]:
    """The nats-py functions whose source differs from the one the fast paths expect."""
    return [name for name, fn in _SOURCES.items() if fingerprint(fn) != FINGERPRINTS[name]]


def _unchanged(*names: str) -> bool:
    stale = [name for name in names if fingerprint(_SOURCES[name]) != FINGERPRINTS[name]]
    if stale:
        log.warning("nats_fast.disabled", changed=stale, hint="nats-py changed; see nats_fast")
    return not stale


# --- 1. next_msg -------------------------------------------------------------------------------


def _install_next_msg() -> bool:
    original = Subscription.next_msg
    if getattr(original, _MARK, False):
        return True
    if not _unchanged("Subscription.next_msg"):
        return False

    async def next_msg(self: Subscription, timeout: float | None = 1.0) -> Msg:  # noqa: ASYNC109 (nats-py's signature)
        queue = self._pending_queue
        # nats-py's path when it would wait, raise, or time out at once (wait_for with a
        # timeout <= 0 refuses even a queued message)
        if (
            queue.empty()
            or self._conn.is_closed
            or self._cb
            or (timeout is not None and timeout <= 0)
        ):
            return await original(self, timeout)
        msg = queue.get_nowait()
        self._pending_size -= len(msg.data)
        queue.task_done()
        return msg

    next_msg.__doc__ = original.__doc__
    setattr(next_msg, _MARK, True)
    Subscription.next_msg = next_msg  # type: ignore[method-assign]
    return True


# --- 2. acknowledgements -------------------------------------------------------------------------

_SUBJECT_INVALID = getattr(nats_client, "_SUBJECT_INVALID_RE", None)


@functools.cache
def _commands_fast() -> bool:
    """Whether a batch's protocol bytes may be handed to the client as one command: the
    client's buffer works, and formats messages, as `send_commands` and its callers assume
    (checked once)."""
    return _SUBJECT_INVALID is not None and _unchanged(
        "Msg.ack",
        "Msg._check_reply",
        "Client.publish",
        "Client._send_publish",
        "Client._send_command",
        "Client._flush_pending",
    )


async def send_commands(client: Client, data: bytes, messages: int, payload_size: int) -> bool:
    """Hand `messages` protocol messages, already written as `data`, to `client` as one
    command, with the checks and the accounting of `Client.publish` made once for all
    (closed, draining, the reconnect buffer's limit: all of it is buffered, or none and the
    error `publish` raises); the flusher writes it to the socket as after `publish`.
    False, with nothing done, when the fast path is off: the caller publishes one by one."""
    if not _commands_fast():
        return False
    if client.is_closed:
        raise nats_errors.ConnectionClosedError
    if client.is_draining_pubs:
        raise nats_errors.ConnectionDrainingError
    if not client.is_connected and (
        client._max_pending_size <= 0
        or len(data) + client._pending_data_size > client._max_pending_size
    ):
        raise nats_errors.OutboundBufferLimitError
    client.stats["out_msgs"] += messages
    client.stats["out_bytes"] += payload_size
    await client._send_command(data)
    if client._flush_queue is not None and client._flush_queue.empty():
        await client._flush_pending()
    return True


def ack_command(replies: Sequence[str]) -> bytes:
    """The protocol bytes of acknowledging messages by their reply subjects: what
    `msg.ack()` (a `publish(reply)` with no payload and no reply) appends for each."""
    return "".join([f"PUB {reply}  0\r\n\r\n" for reply in replies]).encode()


async def ack_all(msgs: Sequence[Any]) -> None:
    """`await msg.ack()` for each of `msgs`, in order, in one command when that is the same
    thing: nats-py messages of one connected client, each with a reply subject nats-py
    would publish to, none acknowledged yet. Anything else goes through `msg.ack()`, which
    raises what it raises."""
    if not msgs:
        return
    client = _one_client(msgs)
    if client is None or not await send_commands(
        client, ack_command([msg.reply for msg in msgs]), len(msgs), 0
    ):
        for msg in msgs:
            await msg.ack()
        return
    for msg in msgs:
        msg._ackd = True


def _one_client(msgs: Sequence[Any]) -> Client | None:
    """The connected client of `msgs` when the batch may be acknowledged in one command."""
    first = msgs[0]
    if type(first) is not Msg:
        return None
    client = first._client
    if not isinstance(client, Client) or client._status != Client.CONNECTED:
        return None
    for msg in msgs:
        if type(msg) is not Msg or msg._client is not client or msg._ackd or not msg.reply:
            return None
    if len({id(msg) for msg in msgs}) != len(msgs):  # a second ack of one message raises
        return None
    # what `publish` refuses in a subject (whitespace, CR, LF), looked for in all at once
    if _SUBJECT_INVALID is None or _SUBJECT_INVALID.search("".join([m.reply for m in msgs])):
        return None
    return client


# --- 3. header blocks ---------------------------------------------------------------------------

#: The characters `str.isspace` is true for among ASCII ones: tab to carriage return,
#: the four separators 0x1c-0x1f and space.
_ASCII_SPACE = re.compile(rb"[\t-\r\x1c- ]")


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """What nats-py's `Client._parse_header_lines` returns for `raw` (`Name: Value` lines
    separated by CRLF; a line without a colon, a name that is not ASCII or that holds
    whitespace is skipped; a value is stripped and decoded as UTF-8, errors replaced)."""
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip()
        if not name.isascii() or _ASCII_SPACE.search(name):
            continue
        out[name.decode("ascii")] = value.strip().decode("utf-8", "replace")
    return out


def _install_header_lines() -> bool:
    if getattr(Client._parse_header_lines, _MARK, False):
        return True
    if not _unchanged("Client._parse_header_lines"):
        return False
    setattr(parse_header_lines, _MARK, True)
    Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
    return True


def install() -> dict[str, bool]:
    """Enable the fast paths whose nats-py source is unchanged (idempotent); which are on."""
    return {
        "next_msg": _install_next_msg(),
        "commands": _commands_fast(),
        "header_lines": _install_header_lines(),
    }
