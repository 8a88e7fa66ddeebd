"""Traces are off unless an OTLP endpoint is configured, and off they cost an `if`: the SDK is
not even imported. On, a database call never starts a trace of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from dxtalent_infra import tracing


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
            "assert tracing.outbox_contexts(['a', None]) is None",
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
