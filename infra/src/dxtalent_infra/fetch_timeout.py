"""A fix between nats-py 2.16 and FastStream 0.7.8, installed once by `consumer`.

nats-py's `PullSubscription.fetch` raises the builtin `TimeoutError` when a lingering pull
request ends empty, while FastStream's batch pull loop catches only `nats.errors.TimeoutError`
(a subclass): the loop's task then dies with the messages it had already collected for the
batch, FastStream restarts it, and those messages, delivered but neither applied nor
acknowledged, stall until `ack_wait` (30 s) brings them back. Measured: under two parallel
test workers, a third of the service tests waited those 30 s. Re-raising the timeout as
`nats.errors.TimeoutError` keeps every caller that catches either class working.
"""

from __future__ import annotations

import functools
from typing import Any

import nats.errors
from nats.js.client import JetStreamContext

_MARK = "_dxtalent_timeout_as_nats_error"


def install(cls: Any = JetStreamContext.PullSubscription) -> None:
    """Make `cls.fetch` (nats-py's pull subscription's) raise `nats.errors.TimeoutError` on
    timeout (idempotent)."""
    if getattr(cls.fetch, _MARK, False):
        return
    original = cls.fetch

    @functools.wraps(original)
    async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, *args, **kwargs)
        except nats.errors.TimeoutError:
            raise
        except TimeoutError as exc:
            raise nats.errors.TimeoutError from exc

    setattr(fetch, _MARK, True)
    cls.fetch = fetch
