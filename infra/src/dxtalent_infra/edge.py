"""Decode once, at the edge: the bytes of a message become a typed `contracts` event here,
and only here; a message that is not one is rejected here with the reason its dead letter
carries. Handlers receive `Delivery.event` and never parse.

A `Parser` takes the contract subject and the bytes and returns the typed event, `None` for
a message the consumer does not use (acknowledged, never handled), or raises
`RejectMessage`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from dxtalent_contracts.inbound import InboundEvent
from dxtalent_contracts.registry import AnyEvent, Rejection, parse_event, parse_inbound
from dxtalent_infra.delivery import Delivery, RejectMessage, delivery_from_msg
from dxtalent_infra.topology import Topology

Parser = Callable[[str, bytes], Any]


def inbound_facts(subject: str, data: bytes) -> InboundEvent:
    """An inbound fact of `dx.inbound.>` (whether it belongs on `subject` is the catalog's
    question, asked by enrollment's domain)."""
    parsed = parse_inbound(data)
    if isinstance(parsed, Rejection):
        raise RejectMessage(parsed.reason, parsed.errors)
    return parsed


def domain_events(only: Collection[str] | None = None, *, check_subject: bool = True) -> Parser:
    """A parser of `dx.events.>` messages; with `only`, messages on other subjects are skipped
    before any parsing. With `check_subject`, an event on a subject its type does not belong
    on is rejected (without it, the handler's domain decides what it accepts)."""
    wanted = frozenset(only) if only is not None else None

    def parse(subject: str, data: bytes) -> AnyEvent | None:
        if wanted is not None and subject not in wanted:
            return None
        event = parse_event(data)
        if isinstance(event, Rejection):
            raise RejectMessage(event.reason, event.errors)
        if check_subject and event.nats_subject != subject:
            raise RejectMessage(
                f"Event type {event.type!r} belongs on subject {event.nats_subject!r} "
                f"but arrived on {subject!r}."
            )
        return event

    return parse


def parse_all(
    parse: Parser | None, deliveries: Sequence[Delivery]
) -> tuple[list[Delivery], dict[int, RejectMessage]]:
    """Each delivery with its typed event, and the rejections by index (what the applier
    takes); without a parser the deliveries stay bytes only."""
    parsed = list(deliveries)
    rejected: dict[int, RejectMessage] = {}
    if parse is not None:
        for i, d in enumerate(parsed):
            try:
                parsed[i] = d.with_event(parse(d.subject, d.data))
            except RejectMessage as exc:
                rejected[i] = exc
    return parsed, rejected


def deliveries_of(
    msgs: Sequence[Any], topology: Topology, stream: str, parse: Parser | None
) -> tuple[list[Delivery], dict[int, RejectMessage]]:
    """What `parse_all` makes of the deliveries of `msgs` (JetStream messages of contract
    stream `stream`), each delivery built once, with its event (decision 0275)."""
    deliveries: list[Delivery] = []
    rejected: dict[int, RejectMessage] = {}
    contract_subject = topology.contract_subject
    for i, msg in enumerate(msgs):
        subject = contract_subject(msg.subject)
        event = None
        if parse is not None:
            try:
                event = parse(subject, msg.data)
            except RejectMessage as exc:
                rejected[i] = exc
        deliveries.append(delivery_from_msg(msg, topology, stream, subject=subject, event=event))
    return deliveries, rejected
