"""Durable JetStream consumer with an exactly-once effect on PostgreSQL (guarantees 3, 6, 7).

The transport is FastStream: a JetStream pull subscriber in batch mode bound to the durable
consumer our topology code created (`declare=False`: FastStream never declares or alters a
stream or consumer), with the manual acknowledgement policy, so no FastStream default ever
acknowledges, rejects or drops a message. The whole fetched list reaches one handler,
`_on_batch`, which keeps stream order:

1. each message is parsed once (`edge`), unparsable ones are to be dead-lettered;
2. the batch is applied in one database transaction by `applier.BatchApplier`;
3. only after COMMIT are messages acknowledged, dead letters published (awaited) before their
   originals are acknowledged, and retried messages nak'ed with a backoff delay. The dead
   letters go out while the next batch is applied; `close` waits for them.

With `ConsumerOptions.min_batch_interval` a batch that is not full starts at least that long
after the one before started, then takes what arrived meanwhile: a read model under a trickle
applies a few larger batches instead of many small ones, and a backlog is not slowed
(decision 0290).

The handler takes the fetched list as its decoded body (`_undecoded`), not as a
`NatsMessage` parameter: FastDepends resolves such a parameter by a sync function that it
runs in a worker thread, a thread round trip per batch (decision 0250). At debug level each
batch logs `consumer.batch_timings`: how long it was held after its fetch (the batch before
it, then its top-up), applied, settled, and the age of its oldest message at the end.

`max_deliver` is enforced here from each message's delivery count, and the server-side limit is
left unlimited on purpose: a server that gives up on its own would silently drop a message whose
last attempt died with the process or during a database outage, before it reached the
dead-letter subject. Database outages never consume attempts: the batch is kept, marked in
progress and applied again until the database answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import asyncpg
import structlog
from faststream.exceptions import StopConsume
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js import api

from dxtalent_infra import fetch_timeout, metrics, nats_fast, tracing
from dxtalent_infra.applier import BatchApplier, BatchOutcome
from dxtalent_infra.delivery import Delivery, Handler, RejectMessage
from dxtalent_infra.edge import Parser, deliveries_of
from dxtalent_infra.inbox import PostgresInbox
from dxtalent_infra.nats import broker_inbox_prefix
from dxtalent_infra.settle import Settling, acknowledge, settle_dead
from dxtalent_infra.topology import Topology

__all__ = [
    "MAX_BATCH_INTERVAL_S",
    "AfterCommit",
    "ConsumerConfigError",
    "ConsumerOptions",
    "JetStreamConsumer",
    "Subscription",
    "set_filter_subjects",
]

log = structlog.get_logger(__name__)
fetch_timeout.install()
nats_fast.install()

AfterCommit = Callable[[Sequence[Delivery]], Awaitable[None]]

#: The longest `ConsumerOptions.min_batch_interval` (seconds): a read model at most this
#: late under a trickle, and `stop` never held by it (the wait ends when `stop` comes).
MAX_BATCH_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class _Stamps:
    """When FastStream handed a batch over (perf_counter), with how many messages, and how
    many the top-up added."""

    at: float
    fetched: int
    topped_up: int


class ConsumerConfigError(ValueError):
    """The consumer cannot be set up as asked on this server; retrying will not help."""


@dataclass(frozen=True)
class Subscription:
    """What a consumer reads and what it does with it: contract stream and subjects, durable
    name, the edge parser (None: handlers get bytes only), handler and dead-letter subject."""

    stream: str
    durable: str
    handler: Handler
    deadletter_subject: str
    filter_subjects: tuple[str, ...] = ()
    parser: Parser | None = None


@dataclass(frozen=True)
class ConsumerOptions:
    """How a consumer runs. `after_commit` is a test seam called after COMMIT and before any
    acknowledgement; `fetch_timeout` is how long one fetch waits for a first message from
    the standing pull request (an idle consumer's loop turns at this pace; the server is
    asked again only every `fetch_timeout.EXPIRES_S`); once one came, a batch takes what
    arrives within `fetch_timeout.FILL_S` (see that module, decision 0315), or only what is
    queued when `min_batch_interval` gathers the batches (0345).

    `min_batch_interval` (seconds, 0 = none): a batch starts at least this long after the
    previous one started, unless it was fetched full. Under a steady trickle that makes
    fewer, larger batches, each topped up after its wait, and so fewer per-batch costs
    (decision 0290); a backlog's full batches never wait, and an idle consumer's first
    message is applied at once, since the wait counts from the previous batch's start.
    Meant for consumers off the critical path (a read model)."""

    batch_size: int = 500
    max_deliver: int = 5
    backoff: tuple[float, ...] = (0.5, 2.0, 10.0, 30.0)
    ack_wait: float = 30.0
    fetch_timeout: float = 0.1
    min_batch_interval: float = 0.0
    source: str | None = None
    after_commit: AfterCommit | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_deliver < 1:
            raise ValueError("batch_size and max_deliver must be at least 1")
        if not 0 <= self.min_batch_interval <= MAX_BATCH_INTERVAL_S:
            raise ValueError(f"min_batch_interval must be between 0 and {MAX_BATCH_INTERVAL_S:g} s")


def set_filter_subjects(js: Any, config: api.ConsumerConfig, wire_subjects: Sequence[str]) -> None:
    """Put the filter on `config`. Several subjects need nats-server 2.10+; 2.9 would silently
    ignore them and deliver the whole stream, so that is refused here."""
    if len(wire_subjects) == 1:
        config.filter_subject = wire_subjects[0]
    elif wire_subjects:
        version = js._nc.connected_server_version
        if (version.major, version.minor) < (2, 10):
            raise ConsumerConfigError(
                f"nats-server {version} ignores several filter subjects {list(wire_subjects)}; "
                "use one subject (a wildcard) or nats-server 2.10 or later"
            )
        config.filter_subjects = list(wire_subjects)


async def _undecoded(message: NatsMessage) -> Any:
    """FastStream's decoder for our batches: none (its default builds a message object and
    decodes the JSON of each of the 500 messages, which the edge parser does once itself)."""
    return message.raw_message


class JetStreamConsumer:
    """A durable JetStream consumer, on FastStream `broker`, applying messages to PostgreSQL
    exactly once.

    `subscription.handler(conn, delivery)` runs inside the batch's transaction and must keep
    its effects there: it may run more than once for a message (its savepoint segment is
    re-applied when a later message in it fails), and only the run that commits counts.
    Raising `RejectMessage` dead-letters the message at once; any other exception retries it
    with `backoff` delays, and after `max_deliver` attempts dead-letters it with the reason.

    In a service the broker's lifecycle runs the subscriber (`prepare` first); `run` is the
    same consumer on a broker of its own, until `stop`.
    """

    def __init__(
        self,
        broker: NatsBroker,
        pool: asyncpg.Pool,
        schema: str,
        topology: Topology,
        subscription: Subscription,
        *,
        options: ConsumerOptions | None = None,
    ) -> None:
        self._broker, self._pool, self._topology = broker, pool, topology
        self._sub_spec = subscription
        self._opts = options or ConsumerOptions()
        self._durable = subscription.durable
        self._stream_name = topology.stream(subscription.stream)
        self._filters = [topology.subject(s) for s in subscription.filter_subjects]
        self._settling = Settling(
            durable=self._durable,
            deadletter_subject=topology.subject(subscription.deadletter_subject),
            source=self._opts.source or f"urn:dxtalent:consumer:{self._durable}",
            log=log.bind(consumer=self._durable, stream=self._stream_name),
        )
        self._inbox = PostgresInbox(schema, self._durable, subscription.stream)
        self._stop = asyncio.Event()
        self._died: BaseException | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._dead_lettering: set[asyncio.Task[None]] = set()  # see settle.settle_dead
        self._done_fetching = asyncio.Event()  # set when the handler ends the fetching
        self._last_start: float | None = None  # perf_counter when the last batch started
        self._pull: Any = None  # nats-py's pull subscription, for `close`
        self._hold_max = max(0.1, min(5.0, self._opts.ack_wait / 3))
        self._log = log.bind(consumer=self._durable, stream=self._stream_name)
        self._applier = BatchApplier(
            self._inbox,
            subscription.handler,
            max_deliver=self._opts.max_deliver,
            backoff=self._opts.backoff,
            latency=metrics.HANDLER_SECONDS.labels(self._durable),
            log=self._log,
        )
        self._subscriber = self._subscribe()

    def _subscribe(self) -> Any:
        """Register the FastStream batch pull subscriber; it binds to the existing durable."""
        subscriber = self._broker.subscriber(
            self._filters[0] if len(self._filters) == 1 else "",
            stream=JStream(self._stream_name, declare=False),
            durable=self._durable,
            config=None
            if len(self._filters) == 1
            else api.ConsumerConfig(filter_subjects=self._filters),
            pull_sub=PullSub(self._opts.batch_size, timeout=self._opts.fetch_timeout, batch=True),
            ack_policy=AckPolicy.MANUAL,
            inbox_prefix=broker_inbox_prefix(self._broker),  # batches arrive on our own inbox
            decoder=_undecoded,
            title=f"{self._durable}:{self._stream_name}",
            description=(
                f"Durable consumer `{self._durable}` of stream {self._stream_name}; messages "
                f"it can never apply are dead-lettered on {self._settling.deadletter_subject}."
            ),
        )
        subscriber(self._on_batch)
        # a consumer that spaces its batches out gathers them by its interval: its first
        # message after an idle spell is not held for the fill window (decision 0345)
        fill = 0.0 if self._opts.min_batch_interval > 0 else fetch_timeout.FILL_S
        fetch_timeout.batching(self._stream_name, self._durable, 2 * self._opts.batch_size, fill)
        return subscriber

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def durable(self) -> str:
        """The durable consumer's name (also the `consumer` label of its metrics)."""
        return self._durable

    @property
    def last_batch_started(self) -> float | None:
        """When the latest batch started to be applied (`time.perf_counter`); None before
        the first. With `min_batch_interval`, consecutive starts are at least that apart."""
        return self._last_start

    def _js(self) -> Any:
        return self._broker.connection.jetstream()

    async def prepare(self) -> None:
        """Apply the inbox migrations and create or update the durable consumer (idempotent)."""
        await self._broker.connect()
        async with self._pool.acquire(timeout=10) as conn:
            await self._inbox.migrate(cast(asyncpg.Connection, conn))
        config = api.ConsumerConfig(
            name=self._durable,
            durable_name=self._durable,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._opts.ack_wait,
            max_deliver=-1,  # enforced here, see the module docstring
            max_ack_pending=max(1000, 4 * self._opts.batch_size),
        )
        set_filter_subjects(self._js(), config, self._filters)
        await self._js().add_consumer(self._stream_name, config=config)

    async def run(self) -> None:
        """On a broker of its own: consume until `stop()`, the batch in flight finished."""
        try:
            await self.prepare()
            await self._broker.start()
            self._log.info("consumer.started", batch_size=self._opts.batch_size)
            await self._stop.wait()
        finally:
            await self.close()
            await self._broker.stop()
        self._log.info("consumer.stopped")
        if self._died is not None:
            raise self._died

    async def stop(self) -> None:
        """Ask the consumer to take no new batch; returns at once (see `close`)."""
        self._stop.set()

    async def close(self) -> None:
        """Stop taking batches and wait until those fetched are committed and settled.

        A fetch under way when `stop` came ends within `fetch_timeout`, and its batch is
        applied before the subscriber stops itself; the subscriber is stopped here after that
        time in any case (an idle one keeps polling). Then what the standing pull request
        had queued and no batch took is nak'ed (`fetch_timeout.release`): delivered again at
        once, never acknowledged."""
        self._stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done_fetching.wait(), 2 * self._opts.fetch_timeout + 0.5)
        pull = self._subscriber.subscription or self._pull
        await self._subscriber.stop()
        try:  # queued, never handed over: delivered again at once
            released = await fetch_timeout.release(pull)
            self._log.info("consumer.released", messages=released)
        except Exception as exc:
            self._log.warning("consumer.release_failed", error=repr(exc))
        await self._finish_previous()
        await asyncio.gather(*self._dead_lettering, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._broker.connection.flush(timeout=2)  # buffered acknowledgements

    async def pending_counts(self) -> tuple[int, int]:
        """(pending in the stream, delivered and awaiting acknowledgement); sets the lag gauge."""
        info = await self._js().consumer_info(self._stream_name, self._durable)
        pending, ack_pending = int(info.num_pending or 0), int(info.num_ack_pending or 0)
        metrics.CONSUMER_LAG.labels(self._durable).set(pending + ack_pending)
        return pending, ack_pending

    async def lag(self) -> int:
        """Messages not yet acknowledged: pending in the stream plus awaiting acknowledgement."""
        return sum(await self.pending_counts())

    async def caught_up(self) -> bool:
        """True when nothing is left to apply; False when NATS does not answer."""
        try:
            return await self.lag() == 0
        except Exception:
            return False

    async def last_sequence(self) -> int | None:
        """The highest stream sequence applied by this durable (its checkpoint row)."""
        async with self._pool.acquire(timeout=10) as conn:
            return await self._inbox.checkpoint(cast(asyncpg.Connection, conn))

    # --- one batch ---------------------------------------------------------------------------

    async def _on_batch(self, batch: Any) -> None:
        """FastStream's handler, given each fetched list in stream order. The batch is applied
        in a task, and the handler returns so that FastStream fetches the next batch meanwhile
        (measured: without that overlap the rate fell by ~15%); the next call first waits
        for it, so batches are applied one at a time, in order; when it did wait, it tops its
        batch up with what was queued meanwhile (`fetch_timeout.top_up`). With
        `min_batch_interval`, a batch still not full then waits until that long after the
        previous batch's start (or until `stop`) and is topped up again. Stopping, the batch
        already fetched is applied, then `StopConsume` ends the fetching."""
        fetched = time.perf_counter()
        msgs = cast(list[Any], batch)
        self._pull = self._subscriber.subscription  # FastStream forgets it on StopConsume
        waited = self._inflight is not None and not self._inflight.done()
        await self._finish_previous()
        if self._died is not None:
            self._done_fetching.set()
            raise StopConsume  # dying: this batch is neither applied nor acknowledged
        if self._stop.is_set():
            await self._apply_then_stop(msgs)
        topped: list[Any] = []
        if waited:  # under load: add what arrived while the previous batch was applied
            topped = await self._top_up(self._opts.batch_size - len(msgs))
        if await self._space_out(len(msgs) + len(topped)):  # a trickle: gather more
            if self._stop.is_set():
                await self._apply_then_stop(msgs + topped)
            topped += await self._top_up(self._opts.batch_size - len(msgs) - len(topped))
        stamps = _Stamps(fetched, len(msgs), len(topped))
        self._inflight = asyncio.create_task(
            self._guarded(msgs + topped, stamps), name=f"batch:{self._durable}"
        )

    async def _apply_then_stop(self, msgs: list[Any]) -> NoReturn:
        """Stopping: apply the batch already fetched, then end FastStream's fetching."""
        await self._guarded(msgs)
        self._done_fetching.set()
        raise StopConsume

    async def _space_out(self, size: int) -> bool:
        """Wait until `min_batch_interval` after the previous batch's start, or until `stop`;
        True when it waited. A consumer idle that long (or never started) does not wait, nor
        does a batch of `size` that is full already, fetched or topped up: the interval
        gathers a trickle into fewer batches, it must not slow a backlog (whose next batch,
        fetched while the one before was applied, is often short, and full once topped up)."""
        if (
            self._opts.min_batch_interval <= 0
            or self._last_start is None
            or self._stop.is_set()
            or size >= self._opts.batch_size
        ):
            return False
        delay = self._last_start + self._opts.min_batch_interval - time.perf_counter()
        if delay <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        return True

    async def _top_up(self, room: int) -> list[Any]:
        try:
            return await fetch_timeout.top_up(self._subscriber.subscription, room)
        except Exception as exc:  # the connection is away: the batch is applied as it is
            self._log.debug("consumer.top_up_failed", error=repr(exc))
            return []

    def _settle_later(self, settling: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(settling, name=f"dead-letters:{self._durable}")
        self._dead_lettering.add(task)
        task.add_done_callback(self._dead_lettering.discard)

    async def _finish_previous(self) -> None:
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    async def _guarded(self, msgs: list[Any], stamps: _Stamps | None = None) -> None:
        try:
            await self._process(msgs, stamps)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the process dying: nothing more is fetched or acked
            self._log.error("consumer.died", error=repr(exc), exc_info=exc)
            self._died = exc
            self._stop.set()

    def _deliveries(self, msgs: list[Any]) -> tuple[list[Delivery], dict[int, RejectMessage]]:
        return deliveries_of(msgs, self._topology, self._sub_spec.stream, self._sub_spec.parser)

    async def _process(self, msgs: list[Any], stamps: _Stamps | None = None) -> None:
        started = self._last_start = time.perf_counter()
        deliveries, rejected = self._deliveries(msgs)
        metrics.BATCH_SIZE.labels(self._durable).observe(len(deliveries))
        with tracing.consume_batch(self._durable, self._stream_name, deliveries) as traced:
            outcome = await self._apply_until_committed(msgs, deliveries, rejected)
            if outcome is None:
                return  # stopping while the database is away: the messages will be redelivered
            committed = time.perf_counter()
            if self._opts.after_commit is not None:
                await self._opts.after_commit(deliveries)
            await acknowledge(msgs, outcome, self._settling)
            if outcome.dead:  # published (then acknowledged) while the next batch is applied
                self._settle_later(
                    settle_dead(self._js(), msgs, deliveries, outcome, self._settling)
                )
            traced.settled(outcome)
        settled = time.perf_counter()
        metrics.BATCH_SECONDS.labels(self._durable).observe(settled - started)
        metrics.CONSUMER_LAG.labels(self._durable).set(msgs[-1].metadata.num_pending)
        if stamps is not None and self._log.is_enabled_for(logging.DEBUG):
            self._log_timings(stamps, deliveries[0], started, committed, settled)

    def _log_timings(
        self, stamps: _Stamps, first: Delivery, started: float, committed: float, settled: float
    ) -> None:
        """Where a batch's time went (debug): `held_ms` from its fetch to its apply (waiting for
        the batch before, then `min_batch_interval`, then the top-up), `apply_ms` to COMMIT, `settle_ms` to the last
        acknowledgement sent, and `age_ms` of its oldest message, from JetStream storing it."""
        age = dt.datetime.now(dt.UTC) - first.received_at
        self._log.debug(
            "consumer.batch_timings",
            fetched=stamps.fetched,
            topped_up=stamps.topped_up,
            held_ms=round((started - stamps.at) * 1000, 2),
            apply_ms=round((committed - started) * 1000, 2),
            settle_ms=round((settled - committed) * 1000, 2),
            age_ms=round(age.total_seconds() * 1000, 2),
        )

    async def _apply_until_committed(
        self, msgs: list[Any], deliveries: list[Delivery], rejected: dict[int, RejectMessage]
    ) -> BatchOutcome | None:
        delay = 0.2
        while True:
            try:
                async with self._pool.acquire(timeout=10) as conn:
                    return await self._applier.apply(
                        cast(asyncpg.Connection, conn), deliveries, rejected
                    )
            except Exception as exc:
                self._log.warning(
                    "consumer.batch_not_applied",
                    error=repr(exc),
                    batch=len(deliveries),
                    first_sequence=deliveries[0].stream_sequence,
                    retry_in=delay,
                )
                metrics.CONSUMER_ERRORS.labels(self._durable, "database").inc()
            if self._stop.is_set():
                return None
            await self._keep_in_progress(msgs)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, self._hold_max)
            if self._stop.is_set():
                return None

    async def _keep_in_progress(self, msgs: list[Any]) -> None:
        try:
            for msg in msgs:
                await msg.in_progress()
        except Exception as exc:
            self._log.debug("consumer.in_progress_failed", error=repr(exc))
