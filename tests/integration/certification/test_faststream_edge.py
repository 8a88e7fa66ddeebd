"""The certification service on FastStream leaves the project's topology as the project's
topology code declared it, and documents what it subscribes to; a durable left with the
filter of an earlier version is updated in place."""

from __future__ import annotations

import nats
from nats.js import api

from dxtalent_certification.enrollment_facts import SUBJECTS
from dxtalent_contracts import subjects
from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_contracts.events import CourseEnrolledRecordedEvent
from dxtalent_infra.settings import Settings
from dxtalent_infra.streams import ensure_streams
from dxtalent_infra.topology import EVENTS, Topology
from tests.integration.certification.conftest import running, service_settings
from tests.integration.certification.harness import Enrollment, RunningService
from tests.unit.contracts.test_parsing import _example


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
    assert not consumer.config.filter_subject
    assert consumer.config.filter_subjects == [service.topology.subject(s) for s in SUBJECTS]


async def test_a_durable_with_the_old_filter_is_updated_and_keeps_its_position(
    nats_url: str, database_url: str, topology: Topology
) -> None:
    """A deployment upgraded from the version that filtered `dx.events.enrollment.>`: the
    durable exists with that filter and has messages pending. The service's start updates it
    in place to the fact subjects (NATS 2.10+ allows it): what was pending on them is
    applied, a CourseEnrolled event is never fetched (it is not counted as pending), and
    nothing is dead-lettered."""
    settings = service_settings(nats_url, database_url, topology)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, topology, duplicate_window_s=settings.duplicate_window_s)
        stream = topology.stream(EVENTS.name)
        old = api.ConsumerConfig(
            name="certification",
            durable_name="certification",
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_deliver=-1,
            max_ack_pending=2000,
            filter_subject=topology.subject(subjects.ENROLLMENT_EVENTS),
        )
        await js.add_consumer(stream, config=old)
        who = Enrollment()
        enrolled = _example(CourseEnrolledRecordedEvent)
        for event in (who.record(), enrolled, who.nomination(2025)):
            await js.publish(
                topology.subject(event.nats_subject),
                event.to_json_bytes(),
                headers={"Content-Type": CONTENT_TYPE, "Nats-Msg-Id": event.id},
            )
        before = await js.consumer_info(stream, "certification")
        assert before.num_pending == 3
        async with running(settings, database_url) as svc:
            await svc.caught_up()
            info = await js.consumer_info(stream, "certification")
            assert info.config.filter_subjects == [topology.subject(s) for s in SUBJECTS]
            assert not info.config.filter_subject
            assert info.num_pending == info.num_ack_pending == 0
            assert info.delivered.consumer_seq == 2  # the record and the nomination only
            body = await svc.employee(who.employee_id)
            assert body["employee_id"] == who.employee_id
            assert await svc.dead_letters() == []
    finally:
        await nc.close()


async def test_the_service_serves_its_asyncapi_page(service: RunningService) -> None:
    """`GET /docs/asyncapi` on the running service is FastStream's page naming its channel."""
    response = await service.http.get("/docs/asyncapi")
    assert response.status_code == 200
    assert "asyncapi" in response.text.lower()
