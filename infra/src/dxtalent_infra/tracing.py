"""OpenTelemetry traces: off by default, on when an OTLP endpoint is configured.

Switched on by the standard variables, read once when a service starts (`configure`):
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` set (OTLP over HTTP,
protobuf), unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. Every other
`OTEL_*` variable the SDK knows applies as documented by OpenTelemetry (`OTEL_SERVICE_NAME`,
default `dxtalent-<service>`; `OTEL_EXPORTER_OTLP_HEADERS`; `OTEL_TRACES_SAMPLER`;
`OTEL_BSP_*`). Off, the SDK is never imported and every hook below returns at its first line.

One trace per fact, across the services (decision 0215):

- a consumer continues each message's trace from its `traceparent` header with a span
  `process <subject>` (kind CONSUMER; the contract subject), from fetch to acknowledgement,
  linked to one `<durable> batch` span, a trace of its own holding the batch's database work
  (`consume_batch`);
- an event appended while a message is handled stores that message's trace context in its
  outbox row (`outbox_contexts`, matched by the event's causation id), so the relay publishes
  it in a child `publish <subject>` span (kind PRODUCER) and passes the context on in the NATS
  headers (`publish_span`), however long the event waited in the outbox;
- HTTP requests are traced by the FastAPI instrumentation (`instrument_app`; not `/healthz`,
  `/readyz`, `/metrics`), and a fact taken over HTTP carries the request's context (`inject`);
- PostgreSQL calls are traced by the asyncpg instrumentation, but only inside a trace: a query
  that would start a trace of its own (the relay's polling, the inbox bookkeeping outside a
  batch) is not recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from dxtalent_infra.delivery import Delivery
from dxtalent_infra.records import NewEvent

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = structlog.get_logger(__name__)

TRACEPARENT = "traceparent"
EXCLUDED_URLS = "healthz,readyz,metrics"
"""Paths the HTTP instrumentation leaves out (probes and scrapes)."""


@dataclass
class _State:
    tracer: Tracer | None = None
    provider: TracerProvider | None = None
    owned: bool = False  # built by `configure` (shut down by `shutdown`)


_STATE = _State()

#: message id -> traceparent of its `process` span, for the batch being applied
_MESSAGE_CONTEXTS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "dxtalent_message_contexts", default=None
)


def enabled() -> bool:
    """Whether traces are recorded in this process."""
    return _STATE.tracer is not None


def requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (module docstring)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure(service: str) -> bool:
    """Turn traces on for service `service` when the environment asks for them; True if on."""
    if enabled() or not requested():
        return enabled()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or f"dxtalent-{service}"
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: name}), sampler=_in_trace_sampler()
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    enable(provider, owned=True)
    log.info("tracing.enabled", service=name, exporter="otlp/http")
    return True


def enable(provider: TracerProvider, *, owned: bool = False) -> None:
    """Record traces with `provider` (tests pass one with an in-memory exporter)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    _STATE.provider, _STATE.owned = provider, owned
    _STATE.tracer = provider.get_tracer("dxtalent")
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def disable() -> None:
    """Stop recording (tests); the provider is flushed and, when `configure` built it, shut
    down."""
    if _STATE.provider is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    shutdown()
    _STATE.tracer = _STATE.provider = None


def shutdown() -> None:
    """Export what is buffered (a service stopping); a no-op when traces are off."""
    provider = _STATE.provider
    if provider is None:
        return
    provider.force_flush(timeout_millis=5000)
    if _STATE.owned:
        provider.shutdown()


def _in_trace_sampler() -> Any:
    """The sampler of `OTEL_TRACES_SAMPLER` (default: parent-based, always on), except that a
    database call never starts a trace of its own."""
    from opentelemetry.sdk.trace import sampling
    from opentelemetry.trace import SpanKind, get_current_span

    base = sampling._get_from_env_or_default()

    class InTraceOnly(sampling.Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> sampling.SamplingResult:
            root = not get_current_span(parent_context).get_span_context().is_valid
            if root and kind == SpanKind.CLIENT and attributes and _is_db(attributes):
                return sampling.SamplingResult(sampling.Decision.DROP)
            return base.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"InTraceOnly{{{base.get_description()}}}"

    return InTraceOnly()


def _is_db(attributes: Mapping[str, Any]) -> bool:
    return "db.system" in attributes or "db.system.name" in attributes


def instrument_app(app: FastAPI) -> None:
    """Trace the app's HTTP requests (not probes and scrapes) when traces are on."""
    if _STATE.provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_STATE.provider,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],  # one span per request, not per ASGI message
    )


def _traceparent_of(span_context: Any) -> str:
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"


def _parent(traceparent: str | None) -> Any:
    """The context whose span is the W3C `traceparent` given (a new trace when it is missing
    or malformed). Parsed here rather than by the propagator: it runs once per message."""
    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    parts = traceparent.split("-") if traceparent else ()
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) < 2:
        return Context()
    try:
        trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
        flags = int(parts[3][:2], 16)
    except ValueError:
        return Context()
    if not trace_id or not span_id:
        return Context()
    remote = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return set_span_in_context(NonRecordingSpan(remote), Context())


def inject(headers: dict[str, str]) -> None:
    """Add the current trace context to outgoing NATS `headers` (no-op when off)."""
    if _STATE.tracer is None:
        return
    from opentelemetry.trace import get_current_span

    span_context = get_current_span().get_span_context()
    if span_context.is_valid:
        headers[TRACEPARENT] = _traceparent_of(span_context)


# --- consumers ----------------------------------------------------------------------------


@dataclass
class ConsumedBatch:
    """The spans of one batch (`consume_batch`); `settled` records what became of each."""

    spans: list[Span] = field(default_factory=list)

    def settled(self, outcome: Any) -> None:
        """Mark each message's span with its outcome (an `applier.BatchOutcome`)."""
        if not self.spans:
            return
        from opentelemetry.trace import Status, StatusCode

        marks: dict[int, tuple[str, str | None]] = {}
        for i in outcome.applied:
            marks[i] = ("applied", None)
        for i in outcome.duplicates:
            marks[i] = ("duplicate", None)
        for i, _ in outcome.retry:
            marks[i] = ("retried", "handler failed; retried")
        for dead in outcome.dead:
            marks[dead.index] = ("dead_lettered", dead.reason)
        for i, span in enumerate(self.spans):
            result, error = marks.get(i, ("unsettled", None))
            span.set_attribute("dxtalent.outcome", result)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error[:200]))


_OFF = ConsumedBatch()


@contextlib.contextmanager
def consume_batch(
    durable: str, stream: str, deliveries: Sequence[Delivery]
) -> Iterator[ConsumedBatch]:
    """Around applying and settling a fetched batch: one `process <subject>` span per message,
    continuing the trace of its `traceparent` header and linked to a `<durable> batch` span,
    a trace of its own that is current meanwhile (the batch's database work). Events appended
    meanwhile find their message's context through `outbox_contexts`."""
    tracer = _STATE.tracer
    if tracer is None:
        yield _OFF
        return
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, SpanKind, use_span

    batch_span = tracer.start_span(
        f"{durable} batch",
        context=Context(),
        attributes={
            "messaging.consumer.group.name": durable,
            "messaging.nats.stream": stream,
            "messaging.batch.message_count": len(deliveries),
        },
    )
    to_batch = [Link(batch_span.get_span_context())]
    batch = ConsumedBatch()
    contexts: dict[str, str] = {}
    for d in deliveries:
        span = tracer.start_span(
            f"process {d.subject}",
            context=_parent(d.headers.get(TRACEPARENT)),
            kind=SpanKind.CONSUMER,
            links=to_batch,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": d.subject,
                "messaging.consumer.group.name": durable,
                "messaging.message.id": d.message_key,
                "messaging.nats.stream_sequence": d.stream_sequence,
                "messaging.nats.delivery_count": d.num_delivered,
            },
        )
        batch.spans.append(span)
        traceparent = _traceparent_of(span.get_span_context())
        contexts[d.message_key] = traceparent
        event_id = getattr(d.event, "id", None)
        if isinstance(event_id, str):
            contexts[event_id] = traceparent
    token = _MESSAGE_CONTEXTS.set(contexts)
    try:
        with use_span(batch_span, end_on_exit=True):
            yield batch
    finally:
        _MESSAGE_CONTEXTS.reset(token)
        for span in batch.spans:
            span.end()


# --- outbox ------------------------------------------------------------------------------


def outbox_contexts(events: Sequence[NewEvent]) -> list[str | None] | None:
    """The trace context to store with each event appended now: that of the message it was
    decided from (its causation id), else the current span's. None when traces are off: the
    outbox column then stays NULL at no cost."""
    if _STATE.tracer is None:
        return None
    from opentelemetry.trace import get_current_span

    current = get_current_span().get_span_context()
    fallback = _traceparent_of(current) if current.is_valid else None
    by_message = _MESSAGE_CONTEXTS.get() or {}
    return [by_message.get(e.causation_id or "", fallback) for e in events]


def publish_span(
    subject: str, event_id: str, traceparent: str | None, headers: dict[str, str]
) -> Span | None:
    """A `publish <subject>` span continuing the trace stored with an outbox row,
    its context added to `headers`; None (nothing to do) when traces are off or the row has
    none. End it with `end_spans` once JetStream acknowledged."""
    tracer = _STATE.tracer
    if tracer is None or traceparent is None:
        return None
    from opentelemetry.trace import SpanKind

    span = tracer.start_span(
        f"publish {subject}",
        context=_parent(traceparent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
            "messaging.message.id": event_id,
        },
    )
    headers[TRACEPARENT] = _traceparent_of(span.get_span_context())
    return span


def end_spans(spans: Sequence[Span | None], error: BaseException | None = None) -> None:
    """End the relay's publish spans, marked failed when the batch was not acknowledged."""
    if _STATE.tracer is None:
        return
    from opentelemetry.trace import Status, StatusCode

    for span in spans:
        if span is None:
            continue
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, repr(error)[:200]))
        span.end()
