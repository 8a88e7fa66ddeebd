"""The certification service on FastStream leaves the project's topology as the project's
topology code declared it, and documents what it subscribes to."""

from __future__ import annotations

from dxtalent_contracts import subjects
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import EVENTS
from tests.integration.certification.harness import RunningService


async def test_a_started_service_leaves_the_stream_and_its_consumer_as_declared(
    service: RunningService,
) -> None:
    """After the service (and its FastStream broker) started, DX_EVENTS keeps the duplicate
    window the topology code set (FastStream would cut it to 120 s when declaring), and the
    durable keeps explicit acks and the consumer-enforced max_deliver."""
    js = service.js
    stream = service.topology.stream(EVENTS.name)
    info = await js.stream_info(stream)
    assert info.config.duplicate_window == Settings().duplicate_window_s
    assert info.config.subjects == [service.topology.subject(subjects.EVENTS_ALL)]
    consumer = await js.consumer_info(stream, "certification")
    assert consumer.config.ack_policy == "explicit"
    assert consumer.config.max_deliver == -1
    assert consumer.config.filter_subject == service.topology.subject(subjects.ENROLLMENT_EVENTS)


async def test_the_service_serves_its_asyncapi_page(service: RunningService) -> None:
    """`GET /docs/asyncapi` on the running service is FastStream's page naming its channel."""
    response = await service.http.get("/docs/asyncapi")
    assert response.status_code == 200
    assert "asyncapi" in response.text.lower()
