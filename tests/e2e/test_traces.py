"""Traces: with an OTLP endpoint configured, one fact makes one trace across the three
services, exported over OTLP/HTTP to a receiver in the test (what a collector would get).

The chain it shows: the publisher's context (a `traceparent` header, or the HTTP request of the
facts door) → enrollment `process` → the enrollment relay's `publish`, continued from the
trace context stored in the outbox row → certification `process` → its relay's `publish` of
`SkillAcquired` → reporting `process`, each span the child of the one before.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Sequence

import httpx
import nats

from dxtalent_infra.topology import Topology
from tests.e2e.conftest import INGEST_TOKEN, running_system
from tests.support.otlp import ReceivedSpan, otlp_receiver
from tests.support.servers import ServerUrls

COMPLETION = "dx.inbound.completion"
COMPLETION_RECORDED = "dx.events.enrollment.course-completed"
SKILL_ACQUIRED = "dx.events.certification.skill-acquired"


def _completion(employee_id: str) -> dict[str, object]:
    """A CourseCompleted fact (DX-101 grants two skills) as a CloudEvent."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:test:lms",
        "type": "dxtalent.lms.CourseCompleted.v1",
        "time": "2025-07-15T12:00:00+09:00",
        "datacontenttype": "application/json",
        "data": {"employee_id": employee_id, "course_id": "DX-101", "completed_on": "2025-07-15"},
    }


async def _publish(nats_url: str, topology: Topology, fact: dict[str, object], tp: str) -> None:
    nc = await nats.connect(nats_url)
    headers = {"Nats-Msg-Id": str(fact["id"]), "traceparent": tp}
    await nc.jetstream().publish(
        topology.subject(COMPLETION), json.dumps(fact).encode(), headers=headers
    )
    await nc.drain()


def _tree(spans: Sequence[ReceivedSpan]) -> list[str]:
    """The spans of one trace as an indented tree, `service: name (kind)`, children in order."""
    by_parent: dict[str, list[ReceivedSpan]] = {}
    ids = {s.span_id for s in spans}
    for s in sorted(spans, key=lambda s: s.start_ns):
        by_parent.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in by_parent.get(parent, []):
            lines.append(f"{'  ' * depth}{s.service}: {s.name} ({s.kind})")
            walk(s.span_id, depth + 1)

    walk("", 0)
    return lines


def _path(spans: Sequence[ReceivedSpan], leaf: ReceivedSpan) -> list[tuple[str, str]]:
    """(service, span name) from the root of `leaf`'s trace down to it."""
    by_id = {s.span_id: s for s in spans}
    path = [leaf]
    while path[-1].parent_id in by_id:
        path.append(by_id[path[-1].parent_id])
    return [(s.service, s.name) for s in reversed(path)]


def test_one_fact_is_one_trace_through_enrollment_certification_and_reporting(
    server_urls: ServerUrls,
) -> None:
    """A fact published with a `traceparent` and one sent to the HTTP facts door: each gives
    one trace holding every service's spans, chained parent to child through both relays."""
    with otlp_receiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        with running_system(server_urls, **env) as stack:
            stack.wait_ready(timeout=90, settle_checks=1)
            upstream_trace, upstream_span = secrets.token_hex(16), secrets.token_hex(8)
            by_nats = _completion("E-TRACE-NATS")
            asyncio.run(
                _publish(
                    str(stack.nats_url),
                    Topology(stack.prefix),
                    by_nats,
                    f"00-{upstream_trace}-{upstream_span}-01",
                )
            )
            by_http = _completion("E-TRACE-HTTP")
            response = httpx.post(
                f"{stack.services['enrollment'].base_url}/v1/facts",
                json=by_http,
                headers={
                    "Authorization": f"Bearer {INGEST_TOKEN}",
                    "Content-Type": "application/cloudevents+json",
                },
                timeout=30,
            )
            assert response.status_code == 202, response.text
            stack.wait_ready(timeout=90, settle_checks=3)
            stack.stop_services()  # SIGTERM: each service exports what it still buffers
        spans = receiver.spans()

    services = {"dxtalent-enrollment", "dxtalent-certification", "dxtalent-reporting"}
    assert {s.service for s in spans} == services

    nats_trace = [s for s in spans if s.trace_id == upstream_trace]
    [enrollment] = [s for s in nats_trace if s.name == f"process {COMPLETION}"]
    assert enrollment.parent_id == upstream_span  # continues the publisher's trace
    assert enrollment.attributes["messaging.message.id"] == by_nats["id"]
    assert enrollment.attributes["dxtalent.outcome"] == "applied"
    leaves = [
        s
        for s in nats_trace
        if s.service == "dxtalent-reporting" and s.name == f"process {SKILL_ACQUIRED}"
    ]
    assert len(leaves) == 2, _tree(nats_trace)  # DX-101 grants two skills
    assert _path(nats_trace, leaves[0]) == [
        ("dxtalent-enrollment", f"process {COMPLETION}"),
        ("dxtalent-enrollment", f"publish {COMPLETION_RECORDED}"),
        ("dxtalent-certification", f"process {COMPLETION_RECORDED}"),
        ("dxtalent-certification", f"publish {SKILL_ACQUIRED}"),
        ("dxtalent-reporting", f"process {SKILL_ACQUIRED}"),
    ]
    assert ("dxtalent-reporting", f"process {COMPLETION_RECORDED}") in {
        (s.service, s.name) for s in nats_trace
    }

    [request] = [s for s in spans if s.name == "POST /v1/facts" and s.kind == "server"]
    http_trace = [s for s in spans if s.trace_id == request.trace_id]
    assert {s.service for s in http_trace} == services, _tree(http_trace)
    http_leaf = next(s for s in http_trace if s.name == f"process {SKILL_ACQUIRED}")
    assert _path(http_trace, http_leaf)[0] == ("dxtalent-enrollment", "POST /v1/facts")

    # the batch's database work is a trace of its own, linked from each message it applied
    [batch] = [s for s in spans if s.span_id in enrollment.links]
    assert batch.name == "enrollment batch"
    assert batch.parent_id == ""
    queries = [s for s in spans if s.trace_id == batch.trace_id and s.kind == "client"]
    assert queries, "the batch's PostgreSQL calls are traced under it"
    print("\n".join(["trace of one fact (NATS):", *_tree(nats_trace)]))
    print("\n".join(["trace of one fact (HTTP door):", *_tree(http_trace)]))
