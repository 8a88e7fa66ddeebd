"""`delivery_from_msg` reads a JetStream message's sequence, delivery count and time from its
reply subject itself: the same values nats-py's `msg.metadata` gives, for both its forms."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg

from dxtalent_contracts.inbound import CourseCompleted, CourseCompletedEvent
from dxtalent_infra.delivery import delivery_from_msg
from dxtalent_infra.edge import Parser, deliveries_of, domain_events, inbound_facts, parse_all
from dxtalent_infra.topology import Topology

REPLIES = [
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>
    "$JS.ACK.T1_DX_INBOUND.enrollment.3.17.9.1764536000123456789.4",
    # with domain, account hash and a random token (nats-server 2.10+ may send this form)
    "$JS.ACK.hub.ACCHASH.T1_DX_INBOUND.enrollment.3.17.9.1764536000123456789.4.tok",
]


@pytest.mark.parametrize("reply", REPLIES, ids=["v1", "v2"])
def test_a_delivery_carries_what_nats_py_reads_from_the_reply(reply: str) -> None:
    msg = Msg(
        None,  # type: ignore[arg-type]  # no client: nothing is sent
        subject="t1.dx.inbound.completion",
        reply=reply,
        data=b"{}",
        headers={"Nats-Msg-Id": "fact-1"},
    )
    delivery = delivery_from_msg(msg, Topology("t1"), "DX_INBOUND")
    md = msg.metadata
    assert delivery.stream_sequence == md.sequence.stream == 17
    assert delivery.num_delivered == md.num_delivered == 3
    assert delivery.received_at == md.timestamp
    assert delivery.subject == "dx.inbound.completion"
    assert delivery.message_key == "fact-1"
    assert delivery.with_event("typed").event == "typed"
    assert delivery.with_event("typed").received_at == delivery.received_at


def test_a_message_without_an_id_is_keyed_by_its_stream_sequence() -> None:
    msg = Msg(None, subject="dx.inbound.completion", reply=REPLIES[0], data=b"{}")  # type: ignore[arg-type]
    assert delivery_from_msg(msg, Topology(""), "DX_INBOUND").message_key == "DX_INBOUND:17"


def _jetstream_msg(seq: int, subject: str, data: bytes, msg_id: str | None) -> Msg:
    return Msg(
        None,  # type: ignore[arg-type]  # no client: nothing is sent
        subject=subject,
        reply=REPLIES[seq % 2].replace(".17.", f".{seq}."),
        data=data,
        headers={"Nats-Msg-Id": msg_id} if msg_id else None,
    )


_COMPLETION = CourseCompletedEvent(
    specversion="1.0",
    id="fact-1",
    source="urn:test",
    type="dxtalent.lms.CourseCompleted.v1",
    data=CourseCompleted(
        employee_id="E000001", course_id="DX-101", completed_on=dt.date(2025, 6, 12)
    ),
).to_json_bytes()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["t1.dx.inbound.completion", "dx.inbound.completion", "t1.other"]),
            st.sampled_from([_COMPLETION, b"{}", b"not json", _COMPLETION[:-1]]),
            st.one_of(st.none(), st.text(min_size=1, max_size=5)),
        ),
        max_size=12,
    ),
    st.sampled_from([None, inbound_facts, domain_events(only={"dx.inbound.completion"})]),
)
def test_deliveries_are_built_once_as_parse_all_builds_them(
    messages: list[tuple[str, bytes, str | None]], parser: Parser | None
) -> None:
    """`deliveries_of` (one construction per message, the event parsed first) gives the
    deliveries and rejections that `parse_all` of `delivery_from_msg` gave."""
    msgs = [_jetstream_msg(i + 1, s, d, k) for i, (s, d, k) in enumerate(messages)]
    topology = Topology("t1")
    old, old_rejected = parse_all(
        parser, [delivery_from_msg(m, topology, "DX_INBOUND") for m in msgs]
    )
    new, new_rejected = deliveries_of(msgs, topology, "DX_INBOUND", parser)
    assert new == old
    assert {i: (r.reason, r.errors) for i, r in new_rejected.items()} == {
        i: (r.reason, r.errors) for i, r in old_rejected.items()
    }
