"""How the consumers' batch pull fetches behave, installed once by `consumer` on nats-py's
`PullSubscription.fetch` (FastStream's batch pull loop calls it).

Two fixes between nats-py 2.16 and FastStream 0.7.8:

1. **Timeouts.** nats-py raises the builtin `TimeoutError` when a lingering pull request ends
   empty, while FastStream's batch loop catches only `nats.errors.TimeoutError` (a subclass):
   the loop's task then dies with the messages it had already collected, FastStream restarts
   it, and those messages, delivered but neither applied nor acknowledged, stall until
   `ack_wait` (30 s) brings them back. Measured: under two parallel test workers, a third of
   the service tests waited those 30 s. The timeout is re-raised as `nats.errors.TimeoutError`.
2. **A trickle is not held back** (the consumers' own durables only, see `batching`). Once a lingering pull has delivered its first message,
   nats-py waits for the rest of the batch until the fetch's whole timeout has passed, and
   FastStream's loop fetches again until the batch is full or that timeout is up: every lone
   message paid the consumer's `fetch_timeout` at each hop (`dxtalent bench latency`: median
   101 ms instead of 17 ms). A batch fetch is therefore two fetches: one message, waited for
   as long as the caller allows, then whatever else is there, waited for at most `FILL_S`;
   and after a fetch that came back short, the subscription's next fetch ends at once, which
   makes FastStream's loop hand over the batch it has. Under load batches fill; a trickle
   waits a few milliseconds at most.
3. **A batch in waiting tops itself up** (`top_up`, called by the consumer). The consumer
   fetches the next batch while one is applied, so under load that fetch takes what little
   had arrived by then and waits for the apply; meanwhile more arrives. Once the previous
   batch is done, the waiting one takes what came in the meantime, with one `no_wait` pull
   request that the server answers at once (no lingering request is left behind, whose late
   messages would sit unapplied in the client), and only when it did wait for a batch in
   flight: an idle consumer never does. Decision 0202.
"""

from __future__ import annotations

import contextlib
import functools
import json
from typing import Any

import nats.errors
from nats.js.client import JetStreamContext

_MARK = "_dxtalent_timeout_as_nats_error"
_SHORT = "_dxtalent_last_fetch_short"

#: How long a batch that has its first message waits for more to arrive (seconds).
FILL_S = 0.005

#: The (stream, durable) pairs whose fetches behave as in 2. (the services' consumers);
#: any other pull subscription in the process keeps nats-py's behaviour, with fix 1 only.
_BATCHING: set[tuple[str, str]] = set()


def batching(stream: str, durable: str) -> None:
    """Give the pull subscriptions of `durable` on `stream` the batch behaviour of 2."""
    _BATCHING.add((stream, durable))


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
        if (getattr(self, "_stream", None), getattr(self, "_consumer", None)) not in _BATCHING:
            return await fetch_once(self, batch, timeout, **kwargs)
        if getattr(self, _SHORT, False):  # the batch so far is all there is: hand it over
            setattr(self, _SHORT, False)
            raise nats.errors.TimeoutError
        got = await fetch_once(self, 1, timeout, **kwargs)
        if batch > 1:
            with contextlib.suppress(nats.errors.TimeoutError):  # nothing more yet
                got = [*got, *await fetch_once(self, batch - len(got), FILL_S, **kwargs)]
        setattr(self, _SHORT, len(got) < batch)
        return got

    setattr(fetch, _MARK, True)
    cls.fetch = fetch


async def top_up(subscription: Any, room: int, *, wait_s: float = 1.0) -> list[Any]:
    """Up to `room` messages already waiting for nats-py pull subscription `subscription`,
    from one `no_wait` pull request (the server sends what it has, then a 404/408 status
    when that is less than asked); [] when none. `wait_s` bounds each read in case the
    connection is lost. The batch behaviour of 2. is untouched."""
    if room < 1:
        return []
    request = json.dumps({"batch": room, "no_wait": True}).encode()
    await subscription._nc.publish(subscription._nms, request, subscription._deliver)
    got: list[Any] = []
    with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
        while len(got) < room:
            msg = await subscription._sub.next_msg(timeout=wait_s)
            status = msg.headers.get("Status") if msg.headers else None
            if status is None:
                got.append(msg)
            elif status in ("404", "408"):  # nothing (more) there: the request is over
                break
            # anything else (a heartbeat, a late status of an older request): read on
    return got
