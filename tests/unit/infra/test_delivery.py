"""`delivery_from_msg` reads a JetStream message's sequence, delivery count and time from its
reply subject itself: the same values nats-py's `msg.metadata` gives, for both its forms."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from dxtalent_infra.delivery import delivery_from_msg
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
