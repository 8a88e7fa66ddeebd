"""One message as handlers see it, and how a handler says a message can never be applied.

`Delivery` carries the message's bytes *and* the typed event parsed from them once, at the
edge (`edge`); handlers use `delivery.event` and never parse. `Handler` is the one
definition of a message handler's shape; a handler object may also offer `handle_many`
(`ManyHandler`) to apply a whole savepoint segment in one call (see `applier`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from dxtalent_contracts.events import FieldError
from dxtalent_infra.topology import Topology

MAX_EVENT_ID = 200
MSG_ID_HEADER = "Nats-Msg-Id"
_V1_ACK_TOKENS = 9


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as a handler sees it. `subject` is the contract subject (no prefix).

    `message_key` identifies the fact for de-duplication: the `Nats-Msg-Id` header (the
    CloudEvent id) when present, else `"<contract stream>:<stream sequence>"`. `event` is the
    typed event the consumer's parser made of `data` (None for a consumer without a parser).
    """

    subject: str
    data: bytes
    headers: dict[str, str]
    stream_sequence: int
    num_delivered: int
    message_key: str
    received_at: dt.datetime
    event: Any = None

    def with_event(self, event: Any) -> Delivery:
        """This delivery with its typed event (`dataclasses.replace` costs three times more)."""
        return Delivery(
            self.subject,
            self.data,
            self.headers,
            self.stream_sequence,
            self.num_delivered,
            self.message_key,
            self.received_at,
            event,
        )


class RejectMessage(Exception):  # noqa: N818 - an instruction to the consumer, not a fault
    """Raised for a message that can never be applied: dead-lettered at once."""

    def __init__(self, reason: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = list(errors)


#: Applies one message inside the consumer's batch transaction on the connection.
Handler = Callable[[asyncpg.Connection, Delivery], Awaitable[None]]

#: Optional on a handler object as `handle_many`: applies a whole segment of messages at once,
#: raising if any of them needs one-at-a-time handling (the segment is then rolled back and
#: halved, and each message that fails alone goes through the handler itself, so rejections
#: and retries stay per message). It may be called on any run of messages in stream order;
#: raising before its first statement makes a failed call cheap.
ManyHandler = Callable[[asyncpg.Connection, Sequence[Delivery]], Awaitable[None]]

#: Optional on a handler object as `check`: a pure test of one message, without the database,
#: run on every new message of a batch before any handler; raising `RejectMessage` dead-letters
#: it at once, any other exception retries it, and neither reaches `handle_many` (whose batch
#: then needs no fallback for what `check` already refused).
Check = Callable[[Delivery], None]


def delivery_from_msg(
    msg: Any, topology: Topology, stream: str, *, subject: str | None = None, event: Any = None
) -> Delivery:
    """A JetStream message of contract stream `stream` as a `Delivery`, with `event` (None:
    not parsed) and its contract `subject` when the caller already has it. Built once per
    message: the consumer parses first and makes the delivery with its event
    (`edge.deliveries_of`), as `with_event` would cost a second construction."""
    headers: dict[str, str] = msg.headers or {}
    seq, delivered, received_at = _ack_fields(msg)
    return Delivery(
        topology.contract_subject(msg.subject) if subject is None else subject,
        msg.data,
        headers,
        seq,
        delivered,
        headers.get(MSG_ID_HEADER) or f"{stream}:{seq}",
        received_at,
        event,
    )


def _ack_fields(msg: Any) -> tuple[int, int, dt.datetime]:
    """(stream sequence, delivery count, time stored) of a JetStream message, read from its
    reply subject `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.
    <pending>` (what nats-py's `msg.metadata` reads too, into two dataclasses: a third of the
    cost of a delivery); the longer form with domain and account goes through nats-py."""
    tokens: list[str] = msg.reply.split(".") if msg.reply else []
    if len(tokens) == _V1_ACK_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
        return (
            int(tokens[5]),
            int(tokens[4]),
            dt.datetime.fromtimestamp(int(tokens[7]) / 1e9, dt.UTC),
        )
    md = msg.metadata
    return md.sequence.stream, md.num_delivered, md.timestamp


def trace_ids(data: bytes) -> dict[str, str]:
    """`event_id` / `correlation_id` of a CloudEvent's bytes, for logs; empty when unreadable."""
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    ids = {"event_id": doc.get("id"), "correlation_id": doc.get("correlationid")}
    return {k: v for k, v in ids.items() if isinstance(v, str) and 0 < len(v) <= MAX_EVENT_ID}
