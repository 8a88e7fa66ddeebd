"""Every Prometheus metric of the services, defined once at import on the default registry.

Consumer metrics are labelled by `consumer` (the durable name), relay metrics by `service`.
Defining them here, once, keeps tests that build many consumers in one process free of
duplicate-registration errors; `render_metrics()` is what a `/metrics` endpoint returns.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MESSAGES_HANDLED = Counter(
    "dxtalent_messages_handled_total",
    "Messages whose handler committed.",
    ["consumer"],
)
MESSAGES_DUPLICATE = Counter(
    "dxtalent_messages_duplicate_total",
    "Redelivered or duplicated messages skipped because the inbox already held them.",
    ["consumer"],
)
MESSAGES_FAILED = Counter(
    "dxtalent_messages_failed_total",
    "Handler exceptions (each attempt counts; the message is retried or dead-lettered).",
    ["consumer"],
)
MESSAGES_DEAD_LETTERED = Counter(
    "dxtalent_messages_dead_lettered_total",
    "Messages sent to a dead-letter subject; cause is `rejected` or `max_deliver`.",
    ["consumer", "cause"],
)
CONSUMER_ERRORS = Counter(
    "dxtalent_consumer_errors_total",
    "Failures outside handlers (database or NATS unavailable); the batch is retried.",
    ["consumer", "kind"],
)
CONSUMER_LAG = Gauge(
    "dxtalent_consumer_lag",
    "Messages not yet acknowledged by the consumer (pending + awaiting ack).",
    ["consumer"],
)
HANDLER_SECONDS = Histogram(
    "dxtalent_handler_seconds",
    "Time spent in the handler for one message.",
    ["consumer"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
)
BATCH_SIZE = Histogram(
    "dxtalent_consumer_batch_size",
    "Messages per fetched batch (one database transaction each).",
    ["consumer"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
BATCH_SECONDS = Histogram(
    "dxtalent_consumer_batch_seconds",
    "Time from fetch to acknowledgement of one batch.",
    ["consumer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DUPLICATES = Counter(
    "dxtalent_duplicate_facts_total",
    "Facts a service already held (same event id), found by its event store and skipped.",
    ["service"],
)
OUTBOX_BACKLOG = Gauge(
    "dxtalent_outbox_backlog",
    "Committed events waiting in the outbox to be published (read at each scrape).",
    ["service"],
)
RELAY_PUBLISHED = Counter(
    "dxtalent_relay_published_total",
    "Events the outbox relay published to JetStream (acknowledged by the stream).",
    ["service"],
)

INBOX_PRUNED = Counter(
    "dxtalent_inbox_pruned_rows_total",
    "Inbox rows deleted because they were older than DXT_INBOX_RETENTION_S.",
    ["service"],
)

READY = Gauge(
    "dxtalent_ready",
    "1 when the service can serve (NATS connected, PostgreSQL answering), else 0; "
    "set by each /readyz probe and /metrics scrape.",
    ["service"],
)
READINESS_CHANGES = Counter(
    "dxtalent_readiness_changes_total",
    "Times the readiness seen by /readyz probes and /metrics scrapes changed (flapping).",
    ["service"],
)


def prime_consumer(durable: str) -> None:
    """Export the counters of consumer `durable` at 0 from its start, so that an alert on
    their increase sees the first dead letter or error too (a series that first appears at 1
    shows no increase)."""
    for counter in (MESSAGES_HANDLED, MESSAGES_DUPLICATE, MESSAGES_FAILED):
        counter.labels(durable)
    for cause in ("rejected", "max_deliver"):
        MESSAGES_DEAD_LETTERED.labels(durable, cause)
    for kind in ("database", "ack", "deadletter"):
        CONSUMER_ERRORS.labels(durable, kind)


def render_metrics() -> tuple[bytes, str]:
    """The body and content type of a `/metrics` response (Prometheus text format)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
