"""Traces are off unless an OTLP endpoint is configured, and off they cost an `if`: the SDK is
not even imported. On, a database call never starts a trace of its own."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from dxtalent_infra import tracing
from dxtalent_infra.delivery import Delivery
from dxtalent_infra.records import NewEvent


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
    ],
)
def test_traces_are_requested_only_with_an_otlp_endpoint(env: dict[str, str], on: bool) -> None:
    assert tracing.requested(env) is on


def test_a_service_without_an_endpoint_never_imports_the_sdk() -> None:
    """Every service module imported and `configure` called, as `run_service` does: off,
    and no `opentelemetry.sdk` module loaded; the hooks answer "nothing to do"."""
    code = "\n".join(
        [
            "import sys",
            "import dxtalent_infra.runtime, dxtalent_enrollment.service",
            "import dxtalent_certification.service, dxtalent_reporting.service",
            "from dxtalent_infra import tracing",
            "assert tracing.configure('enrollment') is False",
            "assert tracing.outbox_contexts([]) is None",
            "with tracing.consume_batch('d', 's', []) as batch:",
            "    assert batch.spans == []",
            "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk'))",
            "assert not loaded, loaded",
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_database_calls_are_recorded_only_inside_a_trace() -> None:
    """The relay's polling would otherwise make a trace per query; inside a span they count."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing._in_trace_sampler())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    db = {"db.system": "postgresql"}
    tracer.start_span("SELECT", kind=SpanKind.CLIENT, attributes=db).end()
    with tracer.start_as_current_span("process dx.inbound.completion", kind=SpanKind.CONSUMER):
        tracer.start_span("INSERT", kind=SpanKind.CLIENT, attributes=db).end()
    assert sorted(s.name for s in exporter.get_finished_spans()) == [
        "INSERT",
        "process dx.inbound.completion",
    ]


def test_a_batch_continues_each_message_trace_and_links_it_to_the_batch() -> None:
    """Per message: the child of its `traceparent` (a new trace when it has none or a
    malformed one), linked to the batch span; events appended meanwhile get their message's
    context by causation id, others the batch span's."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    parent = f"00-{'ab' * 16}-{'cd' * 8}-01"
    now = dt.datetime.now(dt.UTC)
    deliveries = [
        Delivery("dx.inbound.completion", b"{}", {"traceparent": tp}, seq, 1, f"m{seq}", now)
        for seq, tp in enumerate((parent, "00-zz-nonsense-01", ""), start=1)
    ]
    events = [
        NewEvent("e1", "dxtalent.x.Done.v1", {}, now, causation_id="m1"),
        NewEvent("e9", "dxtalent.x.Done.v1", {}, now, causation_id="elsewhere"),
    ]
    tracing.enable(provider)
    try:
        with tracing.consume_batch("enrollment", "DX_INBOUND", deliveries) as batch:
            stored = tracing.outbox_contexts(events)
        batch_span, *messages = sorted(
            exporter.get_finished_spans(), key=lambda s: s.name != "enrollment batch"
        )
    finally:
        tracing.disable()
    assert [m.name for m in messages] == ["process dx.inbound.completion"] * 3
    first = messages[0]
    assert first.parent is not None
    assert (first.context.trace_id, first.parent.span_id) == (int("ab" * 16, 16), int("cd" * 8, 16))
    assert [m.parent for m in messages[1:]] == [None, None]
    assert all([link.context for link in m.links] == [batch_span.context] for m in messages)
    assert batch_span.parent is None
    assert stored == [
        tracing._traceparent_of(first.context),
        tracing._traceparent_of(batch_span.context),
    ]
    assert str(stored[0]).startswith(f"00-{'ab' * 16}-{first.context.span_id:016x}-")
    assert len(batch.spans) == 3
