"""The nats-py / FastStream timeout fix (`dxtalent_infra.fetch_timeout`)."""

from __future__ import annotations

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
